"""The fault catalogue of the test RPC proxy: which requests each fault kind matches and what it answers.

Error texts are copied from real providers (see DOMAIN.md, "JSON-RPC providers") so that an indexer's
error classification is tested against what it will meet. Everything here is pure except `Upstream`
(the real node) and the lagging-head emulation, which must look blocks up.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

JsonObj = dict[str, Any]

GET_LOGS = "eth_getLogs"

RANGE_KINDS = frozenset(
    {"infura_range", "alchemy_range", "alchemy_free_range", "reth_range"}
    | {"ankr_range", "arbitrum_range", "quicknode_range"}
)
"""eth_getLogs range/size limits; they only ever match eth_getLogs items."""
LOG_MUTATING_KINDS = frozenset({"empty_logs", "duplicate_log", "wrong_block_hash"})
"""Forward, then corrupt a non-empty log list; they never fire on an empty one."""
FIXED_ERROR_KINDS = frozenset({"head_not_ready", "fatal", "unknown_block", "rate_limit_jsonrpc", "missing_trie_node",
                               "history_unavailable"})
DELAY_KINDS = frozenset({"timeout", "slow"})
HTTP_KINDS = frozenset({"http_429", "http_500"})
LAGGING_HEAD = "lagging_head"
MALFORMED_KINDS = frozenset({"null_id", "missing_field", "no_result", "wrong_type"})
"""Forward, then break the reply's shape: `"id": null`, a field of the result removed (`Fault.field`; by default
`parentHash` of a block, `logIndex` of each log), neither result nor error, or a result of the wrong JSON type."""
NON_JSON = "non_json"
"""HTTP 200 whose body is not JSON (a load balancer's page): answers the whole HTTP request."""
LAG_METHODS = frozenset(
    {"eth_blockNumber", "eth_getBlockByNumber", "eth_getBlockByHash", GET_LOGS}
    | {"eth_getTransactionReceipt", "eth_getTransactionByHash"}
)
"""Methods whose answer depends on the node's head: lagging_head matches them whatever `Fault.method` is."""
STALE_FORK = "stale_fork"
STALE_METHODS = frozenset({"eth_getBlockByNumber", "eth_getBlockByHash", GET_LOGS})
"""Methods whose answer a stale_fork node changes: it matches them whatever `Fault.method` is."""
KINDS = (RANGE_KINDS | LOG_MUTATING_KINDS | FIXED_ERROR_KINDS | DELAY_KINDS | HTTP_KINDS | MALFORMED_KINDS
         | {LAGGING_HEAD, NON_JSON, STALE_FORK})

DEFAULT_TIMEOUT_HOLD = 30.0
"""Seconds a `timeout` fault holds the request when `Fault.delay` is left at 0."""

HTML_429 = (
    "<html><head><title>429 Too Many Requests</title></head><body><center>"
    "<h1>429 Too Many Requests</h1></center></body></html>"
)
TEXT_502 = "502 Bad Gateway\n"
TEXT_NOT_JSON = "upstream connect error or disconnect/reset before headers. reset reason: overflow\n"
BEYOND_HEAD = "block range extends beyond current head block"
ALCHEMY_PAID = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit "
    "on the response size, or you can request any block range with a cap of 10K logs in the response. Based "
    "on your parameters and the response size limit, this block range should work: [{a}, {b}]"
)
ALCHEMY_FREE = (
    "Under the Free tier plan, you can make eth_getLogs requests with up to a 10 block range. Based on your "
    "parameters, this block range should work: [{a}, {b}]"
)


@dataclass
class Fault:
    """One kind of provider misbehaviour, armed on a `FaultProxy` with `FaultProxy.add`.

    `times` is how often it fires (None: on every matching request). `min_range` makes an eth_getLogs
    fault fire only when the requested span (toBlock - fromBlock + 1; 1 for a blockHash filter) exceeds
    it, like a provider limit. `delay` is in seconds (`timeout` holds 30 s when it is 0); `lag` is in blocks.
    `field` is the result field a `missing_field` fault removes ("" for the default of the method).
    `block`, `depth` and `logs` describe a `stale_fork` node: the `depth` blocks from number `block` on are other
    blocks there, the first holding `logs` (log objects without blockNumber/blockHash, which the node fills in).
    """

    kind: str
    method: str = GET_LOGS
    times: int | None = 1
    min_range: int = 0
    delay: float = 0.0
    lag: int = 0
    field: str = ""
    block: int = -1
    depth: int = 1
    logs: tuple[JsonObj, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")

    def matches(self, method: str | None) -> bool:
        """Whether this fault is meant for a request item calling `method` (ignoring times and range)."""
        if method is None:
            return False
        if self.kind == LAGGING_HEAD:
            return method in LAG_METHODS
        if self.kind == STALE_FORK:
            return method in STALE_METHODS
        if (self.kind in RANGE_KINDS or self.kind in LOG_MUTATING_KINDS) and method != GET_LOGS:
            return False
        return self.method in ("*", method)


class ArmedFault:
    """A `Fault` plus how many firings it has left. Only touched from the proxy's event loop thread."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times

    def is_available(self) -> bool:
        """True while the fault may still fire."""
        return self.remaining is None or self.remaining > 0

    def consume(self) -> None:
        """Record one firing."""
        if self.remaining is not None:
            self.remaining -= 1


def suggested_range(first: int, last: int) -> tuple[int, int]:
    """The range a hinting provider suggests: the first half of [first, last], never empty."""
    half = max((last - first + 1) // 2, 1)
    return first, first + half - 1


def range_error(kind: str, first: int, last: int) -> JsonObj:
    """The JSON-RPC `error` object a provider returns for a too-wide eth_getLogs over [first, last]."""
    a, b = suggested_range(first, last)
    if kind == "infura_range":
        lo, hi = f"0x{a:X}", f"0x{b:X}"  # Infura writes upper-case hex digits
        message = f"query returned more than 10000 results. Try with this block range [{lo}, {hi}]."
        return {"code": -32005, "message": message, "data": {"from": lo, "to": hi, "limit": 10000}}
    if kind == "alchemy_range":
        return {"code": -32602, "message": ALCHEMY_PAID.format(a=hex(a), b=hex(b))}
    if kind == "alchemy_free_range":
        return {"code": -32600, "message": ALCHEMY_FREE.format(a=hex(a), b=hex(b))}
    if kind == "reth_range":
        return {"code": -32602, "message": f"query exceeds max results 20000, retry with the range {a}-{b}"}
    if kind == "ankr_range":
        return {"code": -32600, "message": "block range is too wide"}
    if kind == "arbitrum_range":
        return {"code": -32000, "message": "logs matched by query exceeds limit of 10000"}
    if kind == "quicknode_range":
        return {"code": -32602, "message": "eth_getLogs is limited to a 10,000 range"}
    raise ValueError(f"{kind!r} is not a range fault")


def fixed_error(kind: str, method: str) -> JsonObj:
    """The JSON-RPC `error` object of a fault whose answer does not depend on the request's range."""
    if kind == "head_not_ready":
        return {"code": -32000, "message": "upstream does not have the requested block yet"}
    if kind == "fatal":
        return {"code": -32601, "message": f"the method {method} does not exist/is not available"}
    if kind == "unknown_block":
        return {"code": -32000, "message": "unknown block"}
    if kind == "missing_trie_node":  # geth (hash scheme) on a pruned node
        return {"code": -32000, "message": "missing trie node 4a3b1e0c8d5f6a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d"
                "9e0f1a2b (path ) state 0x4a3b1e0c is not available"}
    if kind == "history_unavailable":  # geth (path scheme)
        return {"code": -32000, "message": "historical state not available in path scheme yet"}
    if kind == "rate_limit_jsonrpc":  # Infura, once the daily quota is spent (HTTP 200)
        return {
            "code": -32005,
            "message": "daily request count exceeded, request rate limited",
            "data": {"see": "https://infura.io/dashboard"},
        }
    raise ValueError(f"{kind!r} is not a fixed-error fault")


def error_reply(item: JsonObj, error: JsonObj) -> JsonObj:
    """A JSON-RPC error response answering `item` (its `id` echoed)."""
    return {"jsonrpc": "2.0", "id": item.get("id"), "error": error}


def result_reply(item: JsonObj, result: Any) -> JsonObj:
    """A JSON-RPC success response answering `item` (its `id` echoed)."""
    return {"jsonrpc": "2.0", "id": item.get("id"), "result": result}


def has_logs(reply: JsonObj) -> bool:
    """True when `reply` is a successful, non-empty log list (the only case a log-mutating fault fires)."""
    result = reply.get("result")
    return isinstance(result, list) and len(result) > 0


def mutate_logs(kind: str, reply: JsonObj) -> JsonObj:
    """Apply a log-mutating fault to a non-empty eth_getLogs reply; returns a new reply."""
    logs: list[JsonObj] = list(reply["result"])
    if kind == "empty_logs":
        logs = []
    elif kind == "duplicate_log":
        logs.append(dict(logs[0]))  # same blockNumber + logIndex, appended out of order
    elif kind == "wrong_block_hash":
        fake: dict[str, str] = {}
        for i, log in enumerate(logs):
            real = str(log.get("blockHash"))
            fake.setdefault(real, "0x" + secrets.token_hex(32))
            logs[i] = {**log, "blockHash": fake[real]}
    else:
        raise ValueError(f"{kind!r} is not a log-mutating fault")
    return {**reply, "result": logs}


def malformed_reply(kind: str, reply: JsonObj, field: str = "") -> JsonObj:
    """Break the shape of a forwarded reply (see MALFORMED_KINDS); returns a new reply."""
    if kind == "null_id":
        return {**reply, "id": None}
    if kind == "no_result":
        return {k: v for k, v in reply.items() if k not in ("result", "error")}
    result = reply.get("result")
    if kind == "wrong_type":
        return {**reply, "result": {"unexpected": True} if isinstance(result, (list, str)) else "0xnot-a-block"}
    if kind == "missing_field":
        if isinstance(result, list):
            name = field or "logIndex"
            return {**reply, "result": [{k: v for k, v in e.items() if k != name} if isinstance(e, dict) else e
                                        for e in result]}
        if isinstance(result, dict):
            name = field or "parentHash"
            return {**reply, "result": {k: v for k, v in result.items() if k != name}}
        return reply
    raise ValueError(f"{kind!r} is not a malformed-reply fault")


def parse_block_number(value: Any) -> int | None:
    """An explicit block number (hex string or int) as int; None for a tag such as "latest" or for absence."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower().startswith("0x"):
        return int(value, 16)
    return None


def first_param(item: JsonObj) -> Any:
    """`params[0]` of a request item, or None."""
    params = item.get("params")
    return params[0] if isinstance(params, list) and params else None


class UpstreamRpcError(Exception):
    """The upstream node answered one of the proxy's own look-ups with a JSON-RPC error."""


class Upstream:
    """The real node: raw relays, item forwarding and the proxy's own look-ups."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url

    async def relay(self, body: bytes) -> tuple[int, bytes, str]:
        """Forward `body` untouched; returns the upstream's HTTP status, body and Content-Type."""
        headers = {"Content-Type": "application/json"}
        async with self._session.post(self._url, data=body, headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")

    async def send(self, item: Any) -> JsonObj:
        """Forward one request item; returns the upstream's reply object (its `id` is the item's)."""
        async with self._session.post(self._url, json=item) as resp:
            reply: JsonObj = await resp.json(content_type=None)
            return reply

    async def call(self, method: str, params: list[Any]) -> Any:
        """The proxy's own call; raises UpstreamRpcError on a JSON-RPC error."""
        reply = await self.send({"jsonrpc": "2.0", "id": 0, "method": method, "params": params})
        if "error" in reply:
            raise UpstreamRpcError(f"{method}: {reply['error']}")
        return reply.get("result")

    async def block_number(self, tag: Any) -> int:
        """Resolve a block tag or number ("latest", "safe", "0x10", ...) to a number."""
        number = parse_block_number(tag)
        if number is not None:
            return number
        if tag == "earliest":
            return 0
        block = await self.call("eth_getBlockByNumber", [tag or "latest", False])
        if block is None:  # e.g. "finalized" before anything is final
            return 0
        return int(block["number"], 16)

    async def number_of_block(self, block_hash: str) -> int | None:
        """The height of the block with `block_hash`, or None if the upstream does not know it."""
        block = await self.call("eth_getBlockByHash", [block_hash, False])
        return None if block is None else int(block["number"], 16)


class LaggingNode:
    """Answers as a node whose head is `lag` blocks behind the upstream's (a failover onto a slow node)."""

    def __init__(self, upstream: Upstream, lag: int) -> None:
        self._upstream = upstream
        self._lag = lag

    async def answer(self, item: JsonObj) -> JsonObj:
        """The lagging node's reply to a request item calling one of `LAG_METHODS`."""
        upstream, method, lag = self._upstream, item.get("method"), self._lag
        head = max(await upstream.block_number("latest") - lag, 0)
        if method == "eth_blockNumber":
            return result_reply(item, hex(head))
        if method == "eth_getBlockByNumber":
            params = list(item.get("params") or ["latest", False])
            number = parse_block_number(params[0])
            if number is not None and number > head:
                return result_reply(item, None)
            if number is None:
                number = await self._tag(params[0], head)
            return await upstream.send({**item, "params": [hex(number), *params[1:]]})
        if method == GET_LOGS:
            return await self._logs(item, head)
        reply = await upstream.send(item)  # by-hash look-ups: hide what the lagging node has not seen yet
        result = reply.get("result")
        if isinstance(result, dict):
            number = parse_block_number(result.get("number", result.get("blockNumber")))
            if number is not None and number > head:
                return result_reply(item, None)
        return reply

    async def _logs(self, item: JsonObj, head: int) -> JsonObj:
        params = list(item.get("params") or [{}])
        flt = dict(params[0])
        if "blockHash" in flt:
            number = await self._upstream.number_of_block(flt["blockHash"])
            if number is not None and number > head:
                return error_reply(item, fixed_error("unknown_block", GET_LOGS))
            return await self._upstream.send(item)
        for key in ("fromBlock", "toBlock"):
            tag = flt.get(key, "latest")
            number = parse_block_number(tag)
            if number is None:
                flt[key] = hex(await self._tag(tag, head))
            elif number > head:
                return error_reply(item, {"code": -32000, "message": BEYOND_HEAD})
        return await self._upstream.send({**item, "params": [flt, *params[1:]]})

    async def _tag(self, tag: Any, head: int) -> int:
        """What a block tag means on the lagging node."""
        if tag == "earliest":
            return 0
        if tag in (None, "latest", "pending"):
            return head
        return max(await self._upstream.block_number(tag) - self._lag, 0)

