"""Redaction of provider URLs: API keys hide in paths (`/v3/KEY`, `/v2/KEY`) and queries (`?apikey=`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRETISH = re.compile(r"[A-Za-z0-9_\-]{16,}")


def redact_url(url: str) -> str:
    """`https://mainnet.infura.io/v3/abcd...` -> `https://mainnet.infura.io/v3/***`.

    Keeps scheme, host and port (needed to tell endpoints apart); masks user info, every query value and any
    path segment that looks like a key (16+ token characters).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    netloc = ("***@" if parts.username or parts.password else "") + host + (f":{parts.port}" if parts.port else "")
    path = "/".join("***" if _SECRETISH.fullmatch(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(f"{kv.split('=', 1)[0]}=***" for kv in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def scrub(text: str, urls: list[str]) -> str:
    """Replace every occurrence of each URL (and its secret parts) in `text` by its redacted form."""
    for url in urls:
        text = text.replace(url, redact_url(url))
        parts = urlsplit(url)
        secrets = [s for s in parts.path.split("/") if _SECRETISH.fullmatch(s)]
        secrets += [kv.split("=", 1)[1] for kv in parts.query.split("&") if "=" in kv]
        if parts.password:
            secrets.append(parts.password)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
    return text


_registered: list[str] = []
_base_factory = logging.getLogRecordFactory()


def _scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    if _registered:
        message = record.getMessage()
        clean = scrub(message, _registered)
        if clean != message:
            record.msg, record.args = clean, ()
    return record


def register_secret_urls(urls: Iterable[str]) -> None:
    """Redact these URLs from every log record of the process, whichever library logs them (web3 logs
    endpoint URLs at INFO). Installed once; idempotent."""
    for url in urls:
        if url not in _registered:
            _registered.append(url)
    if logging.getLogRecordFactory() is not _scrubbing_factory:
        logging.setLogRecordFactory(_scrubbing_factory)
