"""Versions of a stored close: the canonical content hash that goes into the audit chain, and what changed
between two versions (accounts and figures), for version N+1's header. Pure.

A snapshot document is plain JSON data (dicts, lists, strings, ints, bools, None); amounts are ints or decimal
strings, never floats (a float is refused, so a hash never depends on float formatting).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical(document: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal content gives equal bytes."""
    _refuse_floats(document)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(document: Any) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


def changes(before: Mapping[str, Any], after: Mapping[str, Any], *, keyed: Mapping[str, tuple[str, ...]]
            ) -> list[dict[str, Any]]:
    """What differs from `before` to `after`. `keyed` names the sections that are lists of rows and the fields
    that identify a row (e.g. {"accounts": ("chain_id", "token", "wallet")}): those are compared row by row
    ({"section", "key", "field", "before", "after"}, a row added or removed has field None). Other top-level
    entries are compared as a whole. Ordered by section, key, field, so the list is deterministic."""
    out: list[dict[str, Any]] = []
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section), after.get(section)
        if section in keyed:
            out += _row_changes(section, old or [], new or [], keyed[section])
        elif old != new:
            out.append({"section": section, "key": None, "field": None, "before": old, "after": new})
    return out


def _row_changes(section: str, old: list, new: list, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    def index(rows: list) -> dict[tuple, dict]:
        return {tuple(row[f] for f in fields): row for row in rows}

    a, b = index(old), index(new)
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: tuple(map(str, k))):
        if key not in a or key not in b:
            out.append({"section": section, "key": list(key), "field": None, "before": a.get(key),
                        "after": b.get(key)})
            continue
        for name in sorted(set(a[key]) | set(b[key])):
            if a[key].get(name) != b[key].get(name):
                out.append({"section": section, "key": list(key), "field": name, "before": a[key].get(name),
                            "after": b[key].get(name)})
    return out


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("a snapshot holds no floats: amounts are ints or decimal strings")
    if isinstance(value, Mapping):
        for v in value.values():
            _refuse_floats(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _refuse_floats(v)
