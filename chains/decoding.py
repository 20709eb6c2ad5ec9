"""Hand decoding of ERC-20 Transfer logs from raw JSON-RPC dicts (web3's formatters cost 10-40x here)."""

from __future__ import annotations

from collections.abc import Iterable

from chains.types import TransferLog
from wallets import Address, topic_to_address

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

_checksum_cache: dict[str, Address] = {}


def _address(topic: str) -> Address:
    cached = _checksum_cache.get(topic)
    if cached is None:
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


def decode_transfers(logs: Iterable[dict], chain_id: int) -> list[TransferLog]:
    out = []
    for log in logs:
        decoded = decode_transfer(log, chain_id)
        if decoded is not None:
            out.append(decoded)
    return out
