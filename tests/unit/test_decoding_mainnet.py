"""The hand decoder and the bloom check against real Ethereum mainnet data (blocks 17173049-17173050) and an
independent decoder's output (blockchain-etl/ethereum-etl's token_transfers)."""

from __future__ import annotations

import json
from pathlib import Path

from chains.bloom import bloom_contains
from chains.decoding import TRANSFER_TOPIC, decode_transfer
from chains.logs import LogFilter
from wallets import address_to_topic

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mainnet-17173049-17173050"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def _as_rpc(log: dict) -> dict:
    """ethereum-etl's export schema back into the JSON-RPC shape a node returns."""
    return {"address": log["address"], "topics": log["topics"], "data": log["data"],
            "transactionHash": log["transaction_hash"], "logIndex": hex(log["log_index"]),
            "blockNumber": hex(log["block_number"]), "blockHash": log["block_hash"],
            "blockTimestamp": hex(log["block_timestamp"])}


def test_decoded_transfers_equal_the_independent_decoders_erc20_transfers() -> None:
    ours = {}
    for log in _lines("logs.json"):
        t = decode_transfer(_as_rpc(log), 1)
        if t is not None:
            ours[(t.tx_hash, t.log_index)] = (t.token.lower(), t.sender.lower(), t.recipient.lower(), t.amount,
                                              t.block_number, t.block_time)
    by_key = {(log["transaction_hash"], log["log_index"]): log for log in _lines("logs.json")}
    theirs = {}
    for tt in _lines("token_transfers.json"):
        if len(by_key[(tt["transaction_hash"], tt["log_index"])]["topics"]) != 3:
            continue  # ERC-721 Transfers (the id in a 4th topic) are not ERC-20 money movements
        theirs[(tt["transaction_hash"], tt["log_index"])] = (
            tt["token_address"], tt["from_address"], tt["to_address"], int(tt["value"]), tt["block_number"],
            tt["block_timestamp"])
    assert ours == theirs
    assert len([v for v in ours.values() if v[0] == USDT]) == 41
    assert len([v for v in ours.values() if v[0] == USDC]) == 9


def test_the_real_blocks_logs_bloom_contains_every_token_and_wallet_that_moved() -> None:
    blooms = {b["hash"]: b["logs_bloom"] for b in _lines("blocks.json")}
    for log in _lines("logs.json"):
        bloom = blooms[log["block_hash"]]
        assert bloom_contains(bloom, log["address"])
        for topic in log["topics"]:
            assert bloom_contains(bloom, topic)


def test_the_bloom_filter_tells_a_block_with_our_wallets_transfer() -> None:
    block = _lines("blocks.json")[0]
    usdt_logs = [log for log in _lines("logs.json") if log["address"] == USDT and log["block_hash"] == block["hash"]
                 and log["topics"][0] == TRANSFER_TOPIC]
    wallet = "0x" + usdt_logs[0]["topics"][2][-40:]
    assert LogFilter(tokens=(USDT,), wallets=(wallet,)).bloom_says_maybe(block["logs_bloom"])
    absent = [f"0x{i:040x}" for i in range(1, 200)]  # addresses that surely sent nothing
    hits = [a for a in absent if bloom_contains(block["logs_bloom"], address_to_topic(a))]
    assert len(hits) < len(absent) // 2  # a busy mainnet bloom still rules most addresses out
