"""A fault-injecting JSON-RPC HTTP proxy for tests, placed in front of a real node (anvil).

It runs an aiohttp server on its own event loop in a daemon thread, so sync and async tests use it alike:

    with FaultProxy(anvil_url) as proxy:
        proxy.add(Fault("infura_range", min_range=1000), Fault("http_429"))
        ...  # point the indexer at proxy.url

Faults are checked in the order added; for each request item the first one that matches and has firings
left fires (see `rpc_faults` for the catalogue). Anything no fault touches is relayed unchanged. In a batch,
faults apply per item, except that an HTTP-level fault (http_429, http_500, non_json) on any item answers the whole
HTTP request, and a delay on any item holds the whole response.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.rpc_faults import (
    DEFAULT_TIMEOUT_HOLD,
    FIXED_ERROR_KINDS,
    GET_LOGS,
    HTML_429,
    LAGGING_HEAD,
    LOG_MUTATING_KINDS,
    MALFORMED_KINDS,
    NON_JSON,
    RANGE_KINDS,
    STALE_FORK,
    TEXT_502,
    TEXT_NOT_JSON,
    ArmedFault,
    Fault,
    JsonObj,
    LaggingNode,
    Upstream,
    error_reply,
    first_param,
    fixed_error,
    has_logs,
    malformed_reply,
    mutate_logs,
    range_error,
)
from tests.support.stale_fork import StaleForkNode

__all__ = ["Fault", "FaultProxy", "dead_url"]

LOG_LIMIT = 1000
_NOT_JSON = object()
_dead_sockets: list[socket.socket] = []


@dataclass(frozen=True)
class _HttpReply:
    """A non-JSON-RPC answer to the whole HTTP request (429, 502, ...)."""

    status: int
    text: str
    content_type: str

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.text, content_type=self.content_type)


Outcome = JsonObj | _HttpReply


class _Exchange:
    """One request item on its way through the proxy; caches what it learns from the upstream."""

    def __init__(self, item: Any, upstream: Upstream) -> None:
        self.item = item
        self.method: str | None = item.get("method") if isinstance(item, dict) else None
        self.upstream = upstream
        self._reply: JsonObj | None = None
        self._range: tuple[int, int] | None = None

    async def reply(self) -> JsonObj:
        """The upstream's own answer to the item (fetched once)."""
        if self._reply is None:
            self._reply = await self.upstream.send(self.item)
        return self._reply

    async def block_range(self) -> tuple[int, int]:
        """[first, last] block of an eth_getLogs filter; a blockHash filter is the one block it names."""
        if self._range is None:
            flt = first_param(self.item)
            flt = flt if isinstance(flt, dict) else {}
            if "blockHash" in flt:
                number = await self.upstream.number_of_block(flt["blockHash"]) or 0
                self._range = (number, number)
            else:
                first = await self.upstream.block_number(flt.get("fromBlock", "latest"))
                last = await self.upstream.block_number(flt.get("toBlock", "latest"))
                self._range = (first, last)
        return self._range


class FaultProxy:
    """A JSON-RPC proxy to `upstream_url` that injects armed `Fault`s; one start/stop cycle per instance.

    `url` is known (and its port reserved) from construction. `fired` counts firings per fault kind,
    `requests` counts received request items per method (batch items individually), and `log` keeps the
    last 1000 request items. Counters are written by the proxy thread only.
    """

    def __init__(self, upstream_url: str, *, path: str = "/v3/SECRETKEY0123456789abcdef") -> None:
        self.upstream_url = upstream_url
        self.path = path if path.startswith("/") else "/" + path
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}{self.path}"
        self.fired: collections.Counter[str] = collections.Counter()
        self.requests: collections.Counter[str] = collections.Counter()
        self.log: list[JsonObj] = []
        self._faults: list[ArmedFault] = []
        self._faults_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._node: Upstream | None = None
        self._stopping: asyncio.Event | None = None
        self._stopped = False

    # lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Serve on `url` from a background thread; returns self. Idempotent while running."""
        if self._stopped:
            raise RuntimeError("a stopped FaultProxy cannot be restarted; create a new one")
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fault-proxy {self.url}", daemon=True)
        self._thread.start()
        serving = asyncio.run_coroutine_threadsafe(self._serve(), loop)
        try:
            serving.result(timeout=10)
        except BaseException:
            self.stop()  # never leave a loop thread behind a failed start
            raise
        return self

    def stop(self) -> None:
        """Stop serving; requests held by a `timeout`/`slow` fault are answered 503 at once."""
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        try:
            if loop is not None and thread is not None:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            if loop is not None and thread is not None:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                loop.close()
            self._sock.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._node = Upstream(self._session, self.upstream_url)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # faults ----------------------------------------------------------------------------------------

    def add(self, *faults: Fault) -> None:
        """Arm `faults`, after those already armed (earlier ones win)."""
        with self._faults_lock:
            self._faults = [*self._faults, *(ArmedFault(f) for f in faults)]

    def clear(self) -> None:
        """Disarm every fault (counters and log are kept)."""
        with self._faults_lock:
            self._faults = []

    def _armed(self) -> list[ArmedFault]:
        with self._faults_lock:
            return self._faults

    # request handling --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._node is not None
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = _NOT_JSON
        try:
            if payload is _NOT_JSON:
                return _relayed(*await self._node.relay(body))  # the node answers garbage its own way
            return await self._dispatch(body, payload)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"fault proxy: upstream unreachable: {exc!r}\n")
        except Exception as exc:  # a proxy bug must surface as a visible 500, never as a hang
            return web.Response(status=500, text=f"fault proxy error: {exc!r}\n")

    async def _dispatch(self, body: bytes, payload: Any) -> web.StreamResponse:
        assert self._node is not None
        items: list[Any] = payload if isinstance(payload, list) else [payload]
        self._record(items)
        armed = self._armed()
        methods = {item.get("method") for item in items if isinstance(item, dict)}
        if not any(a.is_available() and a.fault.matches(m) for a in armed for m in methods):
            return _relayed(*await self._node.relay(body))
        outcomes = await asyncio.gather(*(self._answer(_Exchange(i, self._node)) for i in items))
        http = next((o for o in outcomes if isinstance(o, _HttpReply)), None)
        if http is not None:
            return http.response()
        return web.json_response(list(outcomes) if isinstance(payload, list) else outcomes[0])

    def _record(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, dict):
                self.requests[str(item.get("method"))] += 1
                self.log.append(item)
        del self.log[:-LOG_LIMIT]

    async def _answer(self, ex: _Exchange) -> Outcome:
        """The first available matching fault fires on the item; otherwise it passes through."""
        for armed in self._armed():
            fault = armed.fault
            if not (armed.is_available() and fault.matches(ex.method)):
                continue
            if fault.min_range and ex.method == GET_LOGS:
                first, last = await ex.block_range()
                if last - first + 1 <= fault.min_range:
                    continue
            if fault.kind in LOG_MUTATING_KINDS and not has_logs(await ex.reply()):
                continue
            if not armed.is_available():  # used up by a concurrent request while we awaited
                continue
            armed.consume()
            self.fired[fault.kind] += 1
            return await self._fire(fault, ex)
        return await ex.reply()

    async def _fire(self, fault: Fault, ex: _Exchange) -> Outcome:
        kind, item = fault.kind, ex.item
        if kind in RANGE_KINDS:
            return error_reply(item, range_error(kind, *await ex.block_range()))
        if kind in FIXED_ERROR_KINDS:
            return error_reply(item, fixed_error(kind, ex.method or ""))
        if kind in LOG_MUTATING_KINDS:
            return mutate_logs(kind, await ex.reply())
        if kind == "http_429":
            return _HttpReply(429, HTML_429, "text/html")
        if kind == "http_500":
            return _HttpReply(502, TEXT_502, "text/plain")
        if kind == NON_JSON:
            return _HttpReply(200, TEXT_NOT_JSON, "text/plain")
        if kind in MALFORMED_KINDS:
            return malformed_reply(kind, await ex.reply(), fault.field)
        if kind == LAGGING_HEAD:
            return await LaggingNode(ex.upstream, fault.lag).answer(ex.item)
        if kind == STALE_FORK:
            return await StaleForkNode(ex.upstream, fault).answer(ex.item)
        hold = (fault.delay or DEFAULT_TIMEOUT_HOLD) if kind == "timeout" else fault.delay
        if await self._hold(hold):
            return _HttpReply(503, "fault proxy stopping\n", "text/plain")
        return await ex.reply()

    async def _hold(self, seconds: float) -> bool:
        """Sleep `seconds`, cut short by stop(); True if the proxy is stopping."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


def _relayed(status: int, body: bytes, content_type: str) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": content_type})


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused (the port stays reserved)."""
    if not _dead_sockets:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # bound but never listening: the kernel answers SYN with RST
        _dead_sockets.append(sock)
    return f"http://127.0.0.1:{_dead_sockets[0].getsockname()[1]}/v3/DEADKEY0123456789abcdef"
