"""Hand decoding of ERC-20 Transfer logs from raw JSON-RPC dicts (web3's formatters cost 10-40x here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from chains.types import TransferLog
from wallets import Address, topic_to_address

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

_checksum_cache: dict[str, Address] = {}


def _address(topic: str) -> Address:
    cached = _checksum_cache.get(topic)
    if cached is None:
        if len(topic) not in (42, 66) or topic[:2] != "0x":  # a malformed reply (chains.replies.decoded)
            raise ValueError(f"not an address or a topic: {topic!r:.80}")
        bytes.fromhex(topic[2:])  # ValueError unless hex: checked once per distinct address, as it is cached
        if len(_checksum_cache) > 200_000:
            _checksum_cache.clear()
        cached = _checksum_cache[topic] = topic_to_address(topic)
    return cached


def decode_transfer(log: dict, chain_id: int, token: Address | None = None) -> TransferLog | None:
    """Decode one raw log; None when it is not an ERC-20 Transfer (ERC-721 Transfers have 4 topics, no data).

    Amounts are exact integers from the 32-byte data word. `token` may be passed when the caller already knows
    the checksummed contract address (saves a keccak per log).
    """
    topics = log["topics"]
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
        return None
    data = log["data"]
    if len(data) != 66:
        return None
    ts = log.get("blockTimestamp")
    return TransferLog(
        chain_id=chain_id,
        token=token or _address(log["address"]),
        sender=_address(topics[1]),
        recipient=_address(topics[2]),
        amount=int(data, 16),
        tx_hash=log["transactionHash"],
        log_index=int(log["logIndex"], 16),
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"],
        block_time=int(ts, 16) if ts else None,
    )


# decode_transfers builds TransferLog positionally (the keyword form costs ~15% of the decode): keep this in step.
_FIELDS = ("chain_id", "token", "sender", "recipient", "amount", "tx_hash", "log_index", "block_number",
           "block_hash", "block_time")
if tuple(f.name for f in fields(TransferLog)) != _FIELDS:
    raise ImportError("chains.types.TransferLog fields changed: update chains.decoding.decode_transfers")


def decode_transfers(logs: Iterable[dict], chain_id: int) -> list[TransferLog]:
    """`decode_transfer` over many logs, dropping the non-Transfers (the backfill hot path, so inlined)."""
    out: list[TransferLog] = []
    append = out.append
    cached = _checksum_cache.get
    for log in logs:
        topics = log["topics"]
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
            continue
        data = log["data"]
        if len(data) != 66:
            continue
        token, sender, recipient = log["address"], topics[1], topics[2]
        ts = log.get("blockTimestamp")
        append(TransferLog(
            chain_id, cached(token) or _address(token), cached(sender) or _address(sender),
            cached(recipient) or _address(recipient), int(data, 16), log["transactionHash"],
            int(log["logIndex"], 16), int(log["blockNumber"], 16), log["blockHash"], int(ts, 16) if ts else None,
        ))
    return out
