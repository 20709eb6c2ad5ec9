"""Shape checks of JSON-RPC results: a node (or a proxy in front of it) that answers a field missing, mistyped or
not hex is a `MalformedReply` (retried, failed over), never a KeyError or TypeError in the watcher.

Each check is passed as `expect=` to `RpcClient.call`/`batch`, so it runs inside the client's failover loop.
"""

from __future__ import annotations

import re
from typing import Any

from chains.decoding import decode_transfers
from chains.errors import MalformedReply
from chains.types import BlockHeader, TransferLog

_HEX = re.compile(r"0x[0-9a-fA-F]+").fullmatch
_HASH = re.compile(r"0x[0-9a-fA-F]{64}").fullmatch
_LOG_FIELDSET = frozenset(("address", "topics", "data", "blockNumber", "blockHash", "transactionHash", "logIndex"))


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
    """An eth_getLogs result: a list of log objects with every field the checks and the decoder read, each of its
    type, the numbers hex. The hex of the words (topics, data, address) is left to the decoder, which parses them
    anyway (`decoded`): checking it twice cost as much as decoding, on the backfill's hot path."""
    if type(result) is not list:
        raise MalformedReply(f"expected a list of logs, got {_show(result)}")
    fields = _LOG_FIELDSET
    for entry in result:
        try:
            if not fields <= entry.keys():
                raise MalformedReply(f"log without {sorted(fields - entry.keys())}")
            int(entry["blockNumber"], 16), int(entry["logIndex"], 16)
            topics, stamp, block_hash = entry["topics"], entry.get("blockTimestamp"), entry["blockHash"]
            if stamp is not None:
                int(stamp, 16)
            if type(topics) is not list:
                raise ValueError(topics)
            for topic in topics:
                if type(topic) is not str or len(topic) != 66:
                    raise ValueError(topic)
            if (type(entry["data"]) is not str or type(entry["address"]) is not str
                    or type(entry["transactionHash"]) is not str or type(block_hash) is not str
                    or len(block_hash) != 66):
                raise ValueError(entry)
        except (AttributeError, TypeError, ValueError):
            raise MalformedReply(f"log with a missing or mistyped field: {_show(entry)}") from None
    return result


def decoded(logs: list[dict], chain_id: int) -> list[TransferLog]:
    """`decode_transfers` of logs that passed `log_list`; a word that is not hex is a MalformedReply."""
    try:
        return decode_transfers(logs, chain_id)
    except (TypeError, ValueError) as exc:
        raise MalformedReply(f"log with a word that is not hex: {type(exc).__name__}: {exc!s:.120}") from None


def _is_hex(text: str) -> bool:
    return _HEX(text) is not None


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and _HASH(value) is not None


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.80}"
