"""Redaction of provider URLs: API keys hide in paths (`/v3/KEY`, `/v2/KEY`, `/KEY/`), queries (`?apikey=KEY`,
`?KEY`) and user info (`https://KEY@host`), and may be of any length. So every path segment is masked except the
words providers use to name a network or an API version, every query value (or bare query item) and the user info;
scheme, host and port stay (they tell endpoints apart)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_VERSION = re.compile(r"v\d{1,2}")
_WORDS = frozenset((
    "rpc", "api", "http", "https", "ws", "wss", "ext", "jsonrpc", "json", "evm", "node", "nodes", "eth", "ethereum",
    "mainnet", "testnet", "sepolia", "holesky", "hoodi", "goerli", "polygon", "matic", "pos", "zkevm", "amoy",
    "arbitrum", "arb", "one", "nova", "optimism", "op", "base", "bsc", "bnb", "avalanche", "avax", "c", "bc",
    "fantom", "ftm", "gnosis", "xdai", "celo", "linea", "scroll", "zksync", "era", "blast", "mantle", "unichain",
    "public", "archive", "full",
))
_MIN_BARE = 4
"""Secrets shorter than this are masked inside their URL only: replacing 3 characters anywhere in a message would
mangle it (and such a key is no secret)."""


def _public(segment: str) -> bool:
    """A path segment that names a network or an API version (`eth`, `v3`, `arbitrum-mainnet`), not a key."""
    if not segment or _VERSION.fullmatch(segment):
        return True
    return all(word in _WORDS for word in re.split(r"[-_.]", segment.lower()))


def _secrets(url: str) -> list[str]:
    """The parts of `url` that `redact_url` masks."""
    parts = urlsplit(url)
    out = [seg for seg in parts.path.split("/") if not _public(seg)]
    out += [kv.split("=", 1)[1] if "=" in kv else kv for kv in parts.query.split("&") if kv]
    out += [s for s in (parts.username, parts.password) if s]
    return [s for s in out if s]


def redact_url(url: str) -> str:
    """`https://mainnet.infura.io/v3/abcd...` -> `https://mainnet.infura.io/v3/***`, whatever the key's length.

    Keeps scheme, host and port (needed to tell endpoints apart); masks user info, every query value (a bare
    query item whole) and every path segment but the network and version words (`_public`).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    netloc = ("***@" if parts.username or parts.password else "") + host + (f":{port}" if port else "")
    path = "/".join(seg if _public(seg) else "***" for seg in parts.path.split("/"))
    query = "&".join(f"{kv.split('=', 1)[0]}=***" if "=" in kv else "***" for kv in parts.query.split("&")) \
        if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def scrub(text: str, urls: list[str]) -> str:
    """Replace every occurrence of each URL in `text` by its redacted form, then its secret parts wherever they
    appear on their own (those of at least `_MIN_BARE` characters)."""
    for url in urls:
        redacted = redact_url(url)
        text = text.replace(url, redacted)
        try:
            secrets = _secrets(url)
        except ValueError:
            continue
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= _MIN_BARE and secret in text:
                # keep the redacted URLs intact while masking the bare secret around them
                pieces = text.split(redacted)
                text = redacted.join(piece.replace(secret, "***") for piece in pieces)
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
