"""Lookups by a pair of columns, in a shape both databases serve from their (first, second) index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement


def pairs_in(first: Any, second: Any, pairs: Sequence[Sequence[Any]], chunk: int = 1000) -> list[ColumnElement]:
    """`first = a AND second IN (...)` per distinct `a`, in chunks: one predicate per chunk. A row-value
    `(first, second) IN (...)` is a full scan on SQLite (0.5 s over 1M records)."""
    grouped: dict[Any, list[Any]] = {}
    for a, b in pairs:
        grouped.setdefault(a, []).append(b)
    return [(first == a) & second.in_(values[i:i + chunk])
            for a, values in sorted(grouped.items()) for i in range(0, len(values), chunk)]
