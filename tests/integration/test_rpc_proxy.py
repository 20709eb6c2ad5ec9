"""The fault-injecting RPC proxy, end to end: httpx -> FaultProxy -> a real anvil."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.rpc_proxy import Fault, FaultProxy, dead_url

ANVIL = Path(__file__).resolve().parents[2] / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
TOPIC = "0x" + "ab" * 32
# Constructor that stores 42 at memory 0 and emits LOG1(TOPIC) with that word as data, then stops.
LOG_INIT_CODE = "0x602a600052" + "7f" + TOPIC[2:] + "60206000a100"
EMPTY_BLOCKS = 20


@dataclass(frozen=True)
class Chain:
    """A running anvil: blocks 1 and 2 each hold one log, blocks 3..head are empty."""

    url: str
    head: int
    log_blocks: tuple[int, ...]


def call(url: str, method: str, params: list[Any] | None = None, *, timeout: float = 5.0) -> httpx.Response:
    """POST one JSON-RPC request (id 7)."""
    payload = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}
    return httpx.post(url, json=payload, timeout=timeout)


def result(url: str, method: str, params: list[Any] | None = None) -> Any:
    """The `result` of a call that must succeed."""
    reply = call(url, method, params).json()
    assert "error" not in reply, reply
    return reply["result"]


def logs_filter(first: int, last: int) -> list[Any]:
    return [{"fromBlock": hex(first), "toBlock": hex(last), "topics": [TOPIC]}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    port = free_port()
    args = [str(ANVIL), "--hardfork", "cancun", "--port", str(port), "--host", "127.0.0.1"]
    proc = subprocess.Popen([*args, "--silent", "--chain-id", "31337"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if call(url, "eth_chainId", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        sender = result(url, "eth_accounts")[0]
        for _ in range(2):  # automine: one block per deployment, each with one log
            result(url, "eth_sendTransaction", [{"from": sender, "data": LOG_INIT_CODE}])
        result(url, "anvil_mine", [hex(EMPTY_BLOCKS)])
        yield Chain(url=url, head=int(result(url, "eth_blockNumber"), 16), log_blocks=(1, 2))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def proxy(chain: Chain) -> Iterator[FaultProxy]:
    with FaultProxy(chain.url) as running:
        yield running


def test_pass_through_is_exact_for_logs_head_and_batches(chain: Chain, proxy: FaultProxy) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 9, "method": "eth_getLogs", "params": logs_filter(0, chain.head)},
        {"jsonrpc": "2.0", "id": None, "method": "eth_chainId", "params": []},
    ]
    # first with nothing armed (raw relay), then with a fault that is checked per item but never fires
    for faults in ([], [Fault("infura_range", min_range=10_000, times=None)]):
        proxy.add(*faults)
        for method, params in [("eth_getLogs", logs_filter(0, chain.head)), ("eth_blockNumber", [])]:
            assert call(proxy.url, method, params).json() == call(chain.url, method, params).json()
        assert httpx.post(proxy.url, json=batch).json() == httpx.post(chain.url, json=batch).json()
    assert len(result(proxy.url, "eth_getLogs", logs_filter(0, chain.head))) == 2
    assert proxy.fired == {}
    assert proxy.requests["eth_getLogs"] == 5 and proxy.requests["eth_chainId"] == 2
    assert proxy.log[-1]["method"] == "eth_getLogs"


ALCHEMY_PAID = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit "
    "on the response size, or you can request any block range with a cap of 10K logs in the response. Based "
    "on your parameters and the response size limit, this block range should work: [0x0, 0xa]"
)
ALCHEMY_FREE = (
    "Under the Free tier plan, you can make eth_getLogs requests with up to a 10 block range. Based on your "
    "parameters, this block range should work: [0x0, 0xa]"
)
RANGE_ERRORS = {  # for a request over [0x0, 0x15]: 22 blocks, so the hint is [0x0, 0xa]
    "infura_range": (-32005, "query returned more than 10000 results. Try with this block range [0x0, 0xA]."),
    "alchemy_range": (-32602, ALCHEMY_PAID),
    "alchemy_free_range": (-32600, ALCHEMY_FREE),
    "reth_range": (-32602, "query exceeds max results 20000, retry with the range 0-10"),
    "ankr_range": (-32600, "block range is too wide"),
    "arbitrum_range": (-32000, "logs matched by query exceeds limit of 10000"),
    "quicknode_range": (-32602, "eth_getLogs is limited to a 10,000 range"),
}


@pytest.mark.parametrize("kind", sorted(RANGE_ERRORS))
def test_range_faults_answer_with_the_providers_own_text(proxy: FaultProxy, kind: str) -> None:
    proxy.add(Fault(kind))
    reply = call(proxy.url, "eth_getLogs", logs_filter(0, 0x15))
    assert reply.status_code == 200
    code, message = RANGE_ERRORS[kind]
    body = reply.json()
    assert body["id"] == 7 and body["error"]["code"] == code and body["error"]["message"] == message
    if kind == "infura_range":
        assert body["error"]["data"] == {"from": "0x0", "to": "0xA", "limit": 10000}
    assert "result" in call(proxy.url, "eth_getLogs", logs_filter(0, 0x15)).json()
    assert proxy.fired == {kind: 1}


def test_times_is_honoured_and_none_means_always(proxy: FaultProxy) -> None:
    proxy.add(Fault("ankr_range", times=2))
    replies = [call(proxy.url, "eth_getLogs", logs_filter(0, 3)).json() for _ in range(3)]
    assert ["error" in r for r in replies] == [True, True, False]
    proxy.clear()
    proxy.add(Fault("arbitrum_range", times=None))
    assert all("error" in call(proxy.url, "eth_getLogs", logs_filter(0, 3)).json() for _ in range(4))
    assert proxy.fired == {"ankr_range": 2, "arbitrum_range": 4}


def test_min_range_fires_only_above_the_limit_never_by_block_hash(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("infura_range", min_range=10, times=None))
    assert "result" in call(proxy.url, "eth_getLogs", logs_filter(1, 10)).json()
    error = call(proxy.url, "eth_getLogs", logs_filter(1, 11)).json()["error"]
    assert error["data"] == {"from": "0x1", "to": "0x5", "limit": 10000}
    block_hash = result(chain.url, "eth_getBlockByNumber", ["0x1", False])["hash"]
    assert len(result(proxy.url, "eth_getLogs", [{"blockHash": block_hash}])) == 1
    assert proxy.fired["infura_range"] == 1


def test_faults_fire_in_the_order_added(proxy: FaultProxy) -> None:
    proxy.add(Fault("ankr_range"), Fault("arbitrum_range"))
    replies = [call(proxy.url, "eth_getLogs", logs_filter(0, 3)).json() for _ in range(3)]
    codes = [reply.get("error", {}).get("code") for reply in replies]
    assert codes == [-32600, -32000, None]


def test_http_faults_answer_429_html_and_502_text(proxy: FaultProxy) -> None:
    proxy.add(Fault("http_429", method="eth_blockNumber"), Fault("http_500", method="eth_blockNumber"))
    too_many = call(proxy.url, "eth_blockNumber")
    assert too_many.status_code == 429 and too_many.headers["content-type"].startswith("text/html")
    assert "<h1>429 Too Many Requests</h1>" in too_many.text
    bad_gateway = call(proxy.url, "eth_blockNumber")
    assert bad_gateway.status_code == 502 and "Bad Gateway" in bad_gateway.text
    assert call(proxy.url, "eth_blockNumber").status_code == 200


@pytest.mark.parametrize(
    ("kind", "method", "code", "message"),
    [
        ("rate_limit_jsonrpc", "eth_getLogs", -32005, "daily request count exceeded, request rate limited"),
        ("head_not_ready", "*", -32000, "upstream does not have the requested block yet"),
        ("fatal", "eth_getLogs", -32601, "the method eth_getLogs does not exist/is not available"),
        ("unknown_block", "eth_getLogs", -32000, "unknown block"),
    ],
)
def test_fixed_errors_come_back_as_json_rpc_errors(
    proxy: FaultProxy, kind: str, method: str, code: int, message: str
) -> None:
    proxy.add(Fault(kind, method=method))
    reply = call(proxy.url, "eth_getLogs", logs_filter(0, 1))
    assert reply.status_code == 200
    assert reply.json()["error"]["code"] == code and reply.json()["error"]["message"] == message
    assert proxy.fired == {kind: 1}


def test_star_faults_match_any_method(proxy: FaultProxy) -> None:
    proxy.add(Fault("head_not_ready", method="*", times=None))
    for method in ("eth_chainId", "eth_blockNumber", "net_version"):
        assert "error" in call(proxy.url, method).json()


def test_timeout_holds_one_request_while_others_are_served(proxy: FaultProxy) -> None:
    proxy.add(Fault("timeout", method="eth_blockNumber", delay=3.0))
    with pytest.raises(httpx.ReadTimeout):
        call(proxy.url, "eth_blockNumber", timeout=0.3)
    started = time.monotonic()
    assert call(proxy.url, "eth_blockNumber").status_code == 200  # served while the first is still held
    assert time.monotonic() - started < 1.0
    assert proxy.fired == {"timeout": 1}


def test_slow_answers_normally_after_the_delay(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("slow", method="eth_getLogs", delay=0.3))
    started = time.monotonic()
    reply = call(proxy.url, "eth_getLogs", logs_filter(0, chain.head))
    assert time.monotonic() - started >= 0.3
    assert reply.json() == call(chain.url, "eth_getLogs", logs_filter(0, chain.head)).json()


async def test_concurrent_requests_are_held_in_parallel_from_async_code(proxy: FaultProxy) -> None:
    proxy.add(Fault("slow", method="*", times=None, delay=0.4))
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        replies = await asyncio.gather(*(client.post(proxy.url, json=payload) for _ in range(10)))
    assert {r.json()["result"] for r in replies} == {"0x7a69"}
    assert time.monotonic() - started < 1.5
    assert proxy.fired == {"slow": 10}


def test_stop_releases_a_held_request_at_once(chain: Chain) -> None:
    proxy = FaultProxy(chain.url).start()
    proxy.add(Fault("timeout", method="eth_blockNumber"))  # holds 30 s by default
    statuses: list[int] = []

    def held_call() -> None:
        statuses.append(call(proxy.url, "eth_blockNumber", timeout=10).status_code)

    client = threading.Thread(target=held_call)
    client.start()
    while not proxy.fired:
        time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    client.join(timeout=5)
    assert time.monotonic() - started < 3 and statuses == [503]


def test_empty_logs_hides_logs_only_where_they_exist(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("empty_logs"))
    assert result(proxy.url, "eth_getLogs", logs_filter(3, 10)) == []
    assert proxy.fired == {}  # nothing to hide yet: the fault is still armed
    assert result(proxy.url, "eth_getLogs", logs_filter(1, 1)) == []
    assert proxy.fired == {"empty_logs": 1}
    real = result(chain.url, "eth_getLogs", logs_filter(1, 1))
    assert len(real) == 1 and result(proxy.url, "eth_getLogs", logs_filter(1, 1)) == real


def test_duplicate_log_repeats_a_block_and_log_index(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("duplicate_log"))
    real = result(chain.url, "eth_getLogs", logs_filter(0, chain.head))
    assert result(proxy.url, "eth_getLogs", logs_filter(0, chain.head)) == [*real, real[0]]


def test_wrong_block_hash_changes_only_the_block_hash(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("wrong_block_hash"))
    real = result(chain.url, "eth_getLogs", logs_filter(0, chain.head))
    forged = result(proxy.url, "eth_getLogs", logs_filter(0, chain.head))
    assert len(forged) == len(real) == 2
    for fake, log in zip(forged, real, strict=True):
        assert fake["blockHash"] != log["blockHash"] and len(fake["blockHash"]) == 66
        assert {**fake, "blockHash": log["blockHash"]} == log


def test_lagging_head_answers_like_a_node_behind_the_upstream(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("lagging_head", lag=3, times=None))
    lagged = chain.head - 3
    assert result(proxy.url, "eth_blockNumber") == hex(lagged)
    latest = result(proxy.url, "eth_getBlockByNumber", ["latest", False])
    assert latest == result(chain.url, "eth_getBlockByNumber", [hex(lagged), False])
    assert result(proxy.url, "eth_getBlockByNumber", [hex(chain.head), False]) is None
    error = call(proxy.url, "eth_getLogs", logs_filter(0, chain.head)).json()["error"]
    assert error == {"code": -32000, "message": "block range extends beyond current head block"}
    to_latest = [{"fromBlock": "0x0", "toBlock": "latest"}]
    assert len(result(proxy.url, "eth_getLogs", to_latest)) == 2
    assert proxy.fired["lagging_head"] == 5


def test_lagging_head_does_not_know_blocks_past_its_head(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("lagging_head", lag=chain.head - 1, times=None))  # the lagging node's head is block 1
    block_2 = result(chain.url, "eth_getBlockByNumber", ["0x2", False])
    error = call(proxy.url, "eth_getLogs", [{"blockHash": block_2["hash"]}]).json()["error"]
    assert error == {"code": -32000, "message": "unknown block"}
    assert result(proxy.url, "eth_getTransactionReceipt", [block_2["transactions"][0]]) is None
    assert result(proxy.url, "eth_getBlockByHash", [block_2["hash"], False]) is None
    assert len(result(proxy.url, "eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}])) == 1


def test_batch_faults_apply_per_item_and_items_are_counted(chain: Chain, proxy: FaultProxy) -> None:
    proxy.add(Fault("infura_range"))
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": logs_filter(0, 3)},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId", "params": []},
    ]
    proxied, direct = httpx.post(proxy.url, json=batch).json(), httpx.post(chain.url, json=batch).json()
    assert [r["id"] for r in proxied] == [1, 2, 3]
    assert proxied[0] == direct[0] and proxied[2] == direct[2]
    assert proxied[1]["error"]["code"] == -32005
    assert proxy.requests == {"eth_blockNumber": 1, "eth_getLogs": 1, "eth_chainId": 1}
    proxy.add(Fault("http_429", method="eth_chainId"))
    assert httpx.post(proxy.url, json=batch).status_code == 429


def test_malformed_reply_faults_break_only_the_shape_of_the_real_reply(chain: Chain, proxy: FaultProxy) -> None:
    direct_block = result(chain.url, "eth_getBlockByNumber", ["0x1", False])
    direct_logs = result(chain.url, "eth_getLogs", logs_filter(0, 3))
    proxy.add(Fault("null_id", method="eth_blockNumber"), Fault("no_result", method="eth_chainId"),
              Fault("missing_field", method="eth_getBlockByNumber"), Fault("missing_field"),
              Fault("missing_field", method="eth_getBlockByNumber", field="hash"),
              Fault("wrong_type", method="eth_blockNumber"), Fault("wrong_type"),
              Fault("wrong_type", method="eth_getBlockByNumber"))
    assert call(proxy.url, "eth_blockNumber").json() == {"jsonrpc": "2.0", "id": None, "result": hex(chain.head)}
    assert call(proxy.url, "eth_chainId").json() == {"jsonrpc": "2.0", "id": 7}
    block = result(proxy.url, "eth_getBlockByNumber", ["0x1", False])
    assert block == {k: v for k, v in direct_block.items() if k != "parentHash"}
    assert result(proxy.url, "eth_getLogs", logs_filter(0, 3)) == [
        {k: v for k, v in e.items() if k != "logIndex"} for e in direct_logs]
    assert "hash" not in result(proxy.url, "eth_getBlockByNumber", ["0x1", False])
    assert result(proxy.url, "eth_blockNumber") == {"unexpected": True}
    assert result(proxy.url, "eth_getLogs", logs_filter(0, 3)) == {"unexpected": True}
    assert result(proxy.url, "eth_getBlockByNumber", ["0x1", False]) == "0xnot-a-block"
    assert result(proxy.url, "eth_getLogs", logs_filter(0, 3)) == direct_logs  # every fault used up
    assert proxy.fired == {"null_id": 1, "no_result": 1, "missing_field": 3, "wrong_type": 3}


def test_non_json_answers_http_200_with_a_body_that_is_not_json(proxy: FaultProxy) -> None:
    proxy.add(Fault("non_json", method="eth_chainId"))
    reply = call(proxy.url, "eth_chainId")
    assert reply.status_code == 200 and reply.text.startswith("upstream connect error")
    with pytest.raises(ValueError):
        reply.json()
    assert call(proxy.url, "eth_chainId").json()["result"] == "0x7a69"


def test_url_carries_the_path_and_other_paths_are_not_found(chain: Chain) -> None:
    with FaultProxy(chain.url, path="/v2/ALCHEMYKEY") as proxy:
        assert proxy.url.startswith("http://127.0.0.1:") and proxy.url.endswith("/v2/ALCHEMYKEY")
        assert result(proxy.url, "eth_chainId") == "0x7a69"
        assert call(proxy.url.replace("ALCHEMYKEY", "OTHER"), "eth_chainId").status_code == 404


def test_dead_url_refuses_connections() -> None:
    with pytest.raises(httpx.ConnectError):
        call(dead_url(), "eth_chainId", timeout=2)


def test_unknown_fault_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("infura")
