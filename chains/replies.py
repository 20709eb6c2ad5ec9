"""Shape checks of JSON-RPC results: a node (or a proxy in front of it) that answers a field missing, mistyped or
not hex is a `MalformedReply` (retried, failed over), never a KeyError or TypeError in the watcher.

Each check is passed as `expect=` to `RpcClient.call`/`batch`, so it runs inside the client's failover loop.
"""

from __future__ import annotations

import re
from typing import Any

from chains.errors import MalformedReply
from chains.types import BlockHeader

_HEX = re.compile(r"0x[0-9a-fA-F]+").fullmatch
_HASH = re.compile(r"0x[0-9a-fA-F]{64}").fullmatch
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}").fullmatch
_LOG_FIELDS = ("address", "topics", "data", "blockNumber", "blockHash", "transactionHash", "logIndex")


def quantity(result: Any) -> int:
    """A JSON-RPC QUANTITY ("0x1a") as int."""
    if not isinstance(result, str) or not _is_hex(result):
        raise MalformedReply(f"expected a hex quantity, got {_show(result)}")
    return int(result, 16)


def header_or_none(raw: Any) -> BlockHeader | None:
    """A block header, or None when the node does not have the block (`null`)."""
    return None if raw is None else parse_header(raw)


def header_numbered(number: int) -> Any:
    """`header_or_none` for a request by number: a block of another height is malformed."""
    def check(raw: Any) -> BlockHeader | None:
        header = header_or_none(raw)
        if header is not None and header.number != number:
            raise MalformedReply(f"asked for block {number}, got block {header.number}")
        return header
    return check


def parse_header(raw: Any) -> BlockHeader:
    """A block header from an eth_getBlockBy* result; every field we rely on must be there and well-formed."""
    if not isinstance(raw, dict):
        raise MalformedReply(f"expected a block object, got {_show(raw)}")
    for name in ("hash", "parentHash"):
        if not _is_hash(raw.get(name)):
            raise MalformedReply(f"block without a valid {name}: {_show(raw.get(name))}")
    for name in ("number", "timestamp"):
        if not isinstance(raw.get(name), str) or not _is_hex(raw[name]):
            raise MalformedReply(f"block without a valid {name}: {_show(raw.get(name))}")
    bloom = raw.get("logsBloom", "")
    return BlockHeader(
        number=int(raw["number"], 16),
        hash=raw["hash"],
        parent_hash=raw["parentHash"],
        timestamp=int(raw["timestamp"], 16),
        logs_bloom=bloom if isinstance(bloom, str) else "",
    )


def log_list(result: Any) -> list[dict]:
    """An eth_getLogs result: a list of log objects with every field the decoder and the checks read."""
    if not isinstance(result, list):
        raise MalformedReply(f"expected a list of logs, got {_show(result)}")
    for entry in result:
        if not isinstance(entry, dict):
            raise MalformedReply(f"expected a log object, got {_show(entry)}")
        for name in _LOG_FIELDS:
            if name not in entry:
                raise MalformedReply(f"log without {name}")
        # the block hash is compared with the header's later: its type and length are enough here (hot path)
        block_hash, number, index = entry["blockHash"], entry["blockNumber"], entry["logIndex"]
        topics, data, stamp = entry["topics"], entry["data"], entry.get("blockTimestamp")
        if not (isinstance(topics, list) and all(isinstance(t, str) and _HASH(t) for t in topics)
                and isinstance(data, str) and (data == "0x" or _HEX(data))
                and isinstance(entry["address"], str) and _ADDRESS(entry["address"])
                and isinstance(entry["transactionHash"], str) and len(entry["transactionHash"]) == 66
                and (stamp is None or (isinstance(stamp, str) and _HEX(stamp)))
                and isinstance(block_hash, str) and len(block_hash) == 66
                and isinstance(number, str) and _HEX(number) and isinstance(index, str) and _HEX(index)):
            raise MalformedReply(f"log with a mistyped field: {_show(entry)}")
    return result


def _is_hex(text: str) -> bool:
    return _HEX(text) is not None


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and _HASH(value) is not None


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.80}"
