"""Classify a provider's JSON-RPC error by its message text (codes differ between providers).

Message fragments come from real providers (see DOMAIN.md): Infura, Alchemy, Reth, QuickNode, Ankr, Arbitrum
Nitro, Base/Optimism, BlockPI, Coinbase, geth.
"""

from __future__ import annotations

import re

from chains.errors import (
    Fatal,
    HeadNotReady,
    HistoryUnavailable,
    RangeTooLarge,
    RateLimited,
    RpcError,
    Transient,
    UnknownBlock,
)

_HEX_RANGE = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_DEC_RANGE = re.compile(r"retry with the range (\d+)-(\d+)")
_MAX_RANGE = re.compile(r"(?:limited to (?:a )?|at most |max block range |up to a )([\d,]+)([kK]?)")

_RANGE_FRAGMENTS = (
    "query returned more than",
    "log response size exceeded",
    "block range should work",
    "query exceeds max",
    "is limited to",
    "block range is too wide",
    "logs matched by query exceeds limit",
    "block range too large",
    "response too large",
    "please limit the query",
    "range is too large",
    "exceed maximum block range",
    "too many blocks",
)
_RATE_FRAGMENTS = ("rate limit", "too many requests", "request count exceeded", "exceeded the quota", "capacity")
_HEAD_FRAGMENTS = (
    "does not have the requested block yet",
    "block range extends beyond current head",
    "after last accepted block",
    "header not found",
    "block not found",
    "blockoutofrangeerror",
)
_HISTORY_FRAGMENTS = (
    "missing trie node",
    "historical state not available",
    "historical state",
    "state is not available",
    "state not available",
    "required historical state unavailable",
    "pruned",
    "archive",
)
_FATAL_CODES = {-32601, -32602, -32600}


def classify_rpc_error(code: int | None, message: str, url: str = "") -> RpcError:
    """Map a JSON-RPC error object to the exception class that tells the client what to do."""
    text = message.lower()
    if "too many rpc calls in batch" in text:
        return RateLimited(message, url=url, code=code)
    if any(f in text for f in _RANGE_FRAGMENTS):
        return RangeTooLarge(message, url=url, code=code, suggested=_suggested(message), max_range=_max(message))
    if any(f in text for f in _RATE_FRAGMENTS) or code == 429:
        return RateLimited(message, url=url, code=code)
    if any(f in text for f in _HEAD_FRAGMENTS):
        return HeadNotReady(message, url=url, code=code)
    if "unknown block" in text:
        return UnknownBlock(message, url=url, code=code)
    if "execution reverted" in text:  # deterministic for the block asked: another URL answers the same
        return Fatal(message, url=url, code=code)
    if any(f in text for f in _HISTORY_FRAGMENTS):
        return HistoryUnavailable(message, url=url, code=code)
    if code in _FATAL_CODES or "does not exist" in text or "not available" in text:
        return Fatal(message, url=url, code=code)
    return Transient(message, url=url, code=code)


def _suggested(message: str) -> tuple[int, int] | None:
    if m := _HEX_RANGE.search(message):
        return int(m.group(1), 16), int(m.group(2), 16)
    if m := _DEC_RANGE.search(message):
        return int(m.group(1)), int(m.group(2))
    return None


def _max(message: str) -> int | None:
    if "free tier" in message.lower() and (m := re.search(r"up to a (\d+) block range", message)):
        return int(m.group(1))
    if m := _MAX_RANGE.search(message):
        return int(m.group(1).replace(",", "")) * (1000 if m.group(2) else 1)
    return None
