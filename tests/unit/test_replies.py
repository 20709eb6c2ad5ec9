"""Shape checks of JSON-RPC results: every malformed shape is a MalformedReply (a ChainError), never a KeyError."""

from __future__ import annotations

from typing import Any

import pytest

from chains.decoding import TRANSFER_TOPIC
from chains.errors import ChainError, MalformedReply, Transient
from chains.replies import decoded, header_numbered, header_or_none, log_list, quantity

H = "0x" + "ab" * 32
BLOCK = {"number": "0x10", "hash": H, "parentHash": "0x" + "cd" * 32, "timestamp": "0x5f5e100", "logsBloom": "0x00"}
LOG = {"address": "0x" + "12" * 20, "topics": [H, H, H], "data": "0x" + "00" * 32, "blockNumber": "0x10",
       "blockHash": H, "transactionHash": H, "logIndex": "0x0", "blockTimestamp": "0x5f5e100"}


def test_well_formed_results_pass() -> None:
    assert quantity("0x1a") == 26
    assert header_or_none(None) is None
    header = header_or_none(BLOCK)
    assert header is not None and (header.number, header.hash, header.timestamp) == (16, H, 100_000_000)
    assert log_list([LOG, {k: v for k, v in LOG.items() if k != "blockTimestamp"}]) == [
        LOG, {k: v for k, v in LOG.items() if k != "blockTimestamp"}]
    assert MalformedReply.__mro__[1] is Transient and issubclass(MalformedReply, ChainError)


@pytest.mark.parametrize("result", [None, 26, "26", "0x", "0xzz", {"unexpected": True}, ["0x1"]])
def test_a_quantity_of_the_wrong_shape_is_malformed(result: Any) -> None:
    with pytest.raises(MalformedReply):
        quantity(result)


@pytest.mark.parametrize("broken", [
    "0xnot-a-block", [BLOCK], {k: v for k, v in BLOCK.items() if k != "parentHash"},
    {k: v for k, v in BLOCK.items() if k != "hash"}, {**BLOCK, "hash": "0x12"}, {**BLOCK, "number": 16},
    {**BLOCK, "timestamp": None}, {**BLOCK, "number": "0x"},
])
def test_a_header_of_the_wrong_shape_is_malformed(broken: Any) -> None:
    with pytest.raises(MalformedReply):
        header_or_none(broken)


def test_a_header_of_another_height_than_asked_is_malformed() -> None:
    assert header_numbered(16)(BLOCK) is not None and header_numbered(16)(None) is None
    with pytest.raises(MalformedReply, match="asked for block 17"):
        header_numbered(17)(BLOCK)


@pytest.mark.parametrize("broken", [
    {"unexpected": True}, "0x", [None], [[LOG]],
    *[[{k: v for k, v in LOG.items() if k != name}] for name in
      ("address", "topics", "data", "blockNumber", "blockHash", "transactionHash", "logIndex")],
    [{**LOG, "logIndex": 0}], [{**LOG, "blockNumber": "0xg"}], [{**LOG, "topics": H}], [{**LOG, "topics": [1]}],
    [{**LOG, "data": 5}], [{**LOG, "address": None}], [{**LOG, "blockHash": None}],
    [{**LOG, "transactionHash": 5}], [{**LOG, "blockTimestamp": "soon"}],
])
def test_logs_of_the_wrong_shape_are_malformed(broken: Any) -> None:
    with pytest.raises(MalformedReply):
        log_list(broken)


@pytest.mark.parametrize("broken", [
    {"data": "0x" + "zz" * 32}, {"address": "0x12"}, {"address": "0x" + "zz" * 20},
    {"topics": [TRANSFER_TOPIC, "0x" + "zz" * 32, H]},
])
def test_a_word_that_is_not_hex_is_malformed_when_decoded(broken: dict) -> None:
    entry = {**LOG, "topics": [TRANSFER_TOPIC, H, H], **broken}
    assert log_list([entry]) == [entry]
    with pytest.raises(MalformedReply):
        decoded([entry], 1)
    assert len(decoded([{**LOG, "topics": [TRANSFER_TOPIC, H, H]}], 1)) == 1
