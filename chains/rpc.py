"""JSON-RPC client with several URLs per chain: health tracking, failover, classified errors, bounded backoff.

Raw requests go through web3's `AsyncHTTPProvider.make_request` (raw JSON dicts, no result formatting). Every
error that leaves this module is a `chains.errors.ChainError` whose text has provider URLs redacted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from web3 import AsyncHTTPProvider
from web3.exceptions import Web3Exception

from chains.classify import classify_rpc_error
from chains.errors import (
    AllEndpointsFailed,
    Fatal,
    HeadNotReady,
    HistoryUnavailable,
    MalformedReply,
    RangeTooLarge,
    RateLimited,
    RpcError,
    Transient,
    WrongChain,
)
from chains.redaction import redact_url, register_secret_urls, scrub
from chains.replies import quantity

log = logging.getLogger(__name__)

Expect = Callable[[Any], Any]

"""Checks and converts one result (see chains.replies); raises MalformedReply when its shape is wrong."""


@dataclass
class Endpoint:
    """One provider URL and what we learned about it. `max_ok_range` is the largest getLogs range that worked."""

    url: str
    redacted: str
    provider: AsyncHTTPProvider
    failures: int = 0
    successes: int = 0
    cooldown_until: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None
    max_ok_range: int = 0
    range_cap: int | None = None
    latency_ms: float = 0.0
    chain_checked: bool = False
    refused: str | None = None  # why this URL is never used (it serves another chain)

    @property
    def healthy(self) -> bool:
        return self.cooldown_until <= time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": self.redacted,
            "healthy": self.healthy,
            "failures": self.failures,
            "successes": self.successes,
            "last_error": self.last_error,
            "max_ok_range": self.max_ok_range,
            "range_cap": self.range_cap,
            "latency_ms": round(self.latency_ms, 2),
            **({"refused": self.refused} if self.refused else {}),
        }


@dataclass
class Backoff:
    """Exponential backoff with full jitter, bounded by `cap` seconds."""

    base: float = 0.05
    cap: float = 5.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


class RpcClient:
    """Failover JSON-RPC client. Endpoint 0 is preferred; after failing over, `head_lag` blocks are kept back."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 15.0,
        max_retries: int = 8,
        failover_lag: int = 3,
        backoff: Backoff | None = None,
        chain_id: int | None = None,
    ) -> None:
        """`chain_id`, when given, is checked on each URL (eth_chainId) before its first use: a URL serving
        another chain is refused (WrongChain), never read from."""
        if not urls:
            raise Fatal("no RPC URL configured")
        self.chain_id = chain_id
        self._urls = list(urls)
        register_secret_urls(self._urls)
        self.endpoints = [
            Endpoint(
                url=u,
                redacted=redact_url(u),
                provider=AsyncHTTPProvider(
                    u,
                    exception_retry_configuration=None,
                    request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
                ),
            )
            for u in urls
        ]
        self.max_retries = max_retries
        self.failover_lag = failover_lag
        self.backoff = backoff or Backoff()
        self.active = 0
        self.failovers = 0

    @property
    def head_lag(self) -> int:
        """Blocks to stay behind the head: non-zero while serving from a fallback node (it may lag)."""
        return self.failover_lag if self.active != 0 else 0

    @property
    def current(self) -> Endpoint:
        return self.endpoints[self.active]

    def _order(self) -> list[int]:
        usable = [i for i, e in enumerate(self.endpoints) if not e.refused]
        if not usable:
            raise WrongChain("; ".join(e.refused or "" for e in self.endpoints))
        healthy = [i for i in usable if self.endpoints[i].healthy]
        cooling = sorted((i for i in usable if not self.endpoints[i].healthy),
                         key=lambda i: self.endpoints[i].cooldown_until)
        return healthy + cooling

    async def check_chain_ids(self) -> None:
        """At start: ask every URL its eth_chainId. One that serves another chain raises WrongChain (naming its
        redacted URL); one that does not answer now is checked before its first use."""
        for ep in self.endpoints:
            try:
                await self._check_chain(ep)
            except WrongChain:
                raise
            except RpcError as exc:
                log.warning("cannot check the chain id of %s now (%s); checked before its first use", ep.redacted,
                            exc.reason[:200])

    async def _check_chain(self, ep: Endpoint) -> None:
        if self.chain_id is None or ep.chain_checked:
            return
        got = self._check(ep, await self._raw(ep, "eth_chainId", []), quantity)
        if got != self.chain_id:
            ep.refused = (f"{ep.redacted} serves chain id {got}, not the configured {self.chain_id}: refused")
            raise WrongChain(ep.refused, url=ep.redacted)
        ep.chain_checked = True

    async def call(
        self, method: str, params: list[Any], *, endpoint: int | None = None, expect: Expect | None = None
    ) -> Any:
        """One JSON-RPC call with failover. RangeTooLarge, Fatal and UnknownBlock are raised to the caller
        at once (they are about the request, not the node); transient faults, malformed replies and rate limits
        are retried on the next endpoint with backoff, up to `max_retries` attempts in all. `expect` checks and
        converts the result (a reply of the wrong shape is a MalformedReply, retried like a transient fault)."""
        return await self._with_failover(lambda ep: self._one(ep, method, params, expect), endpoint)

    async def batch(
        self, calls: Sequence[tuple[str, list[Any]]], *, endpoint: int | None = None, expect: Expect | None = None
    ) -> list[Any]:
        """Several calls in one JSON-RPC batch; results in the order of `calls` (told apart by their ids: a
        missing, null or repeated id is a MalformedReply). A `null` result is kept; `expect` checks each."""
        if not calls:
            return []
        return await self._with_failover(  # type: ignore[no-any-return]
            lambda ep: self._many(ep, calls, expect), endpoint)

    async def _with_failover(self, attempt_fn: Any, endpoint: int | None) -> Any:
        last: RpcError | None = None
        lacking: set[int] = set()  # endpoints that do not keep the state this request needs
        for attempt in range(self.max_retries):
            if endpoint is not None:
                index = endpoint
            else:
                index = next((i for i in self._order() if i not in lacking), -1)
                if index < 0:
                    raise HistoryUnavailable(
                        f"no RPC URL has the historical state asked for ({last.reason if last else ''}): "
                        "an archive node is needed", code=last.code if last else None)
            ep = self.endpoints[index]
            if not ep.healthy:  # every endpoint is cooling down: wait (bounded, jittered) before the retry
                await asyncio.sleep(self.backoff.delay(attempt))
            try:
                await self._check_chain(ep)
                result = await attempt_fn(ep)
            except (RangeTooLarge, Fatal):
                raise
            except HistoryUnavailable as exc:
                if endpoint is not None:
                    raise
                last = exc
                lacking.add(index)
                log.info("RPC %s lacks the state asked for (%s); asking the next URL", ep.redacted, exc.reason[:200])
                continue
            except HeadNotReady as exc:
                last = exc
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            except (Transient, RateLimited) as exc:
                last = exc
                self._mark_failed(index, exc)
                continue
            self._mark_ok(index)
            return result
        if isinstance(last, HeadNotReady | HistoryUnavailable):
            raise last
        raise AllEndpointsFailed(f"all RPC endpoints failed after {self.max_retries} attempts: {last}")

    def _mark_ok(self, index: int) -> None:
        ep = self.endpoints[index]
        ep.successes += 1
        ep.failures = 0
        ep.cooldown_until = 0.0
        if index != self.active:
            if index != 0:
                self.failovers += 1
                log.warning("RPC failover to %s", ep.redacted)
            self.active = index

    def _mark_failed(self, index: int, exc: RpcError) -> None:
        ep = self.endpoints[index]
        ep.failures += 1
        ep.last_error = exc.reason[:300]
        ep.last_error_at = time.time()
        ep.cooldown_until = time.monotonic() + min(30.0, 0.25 * 2 ** min(ep.failures, 7))
        log.info("RPC %s failed (%s): %s", ep.redacted, type(exc).__name__, ep.last_error)

    async def _raw(self, ep: Endpoint, method: str, payload: Any) -> Any:
        started = time.perf_counter()
        try:
            if method == "batch":
                reply = await ep.provider.make_batch_request(payload)
            else:
                reply = await ep.provider.make_request(method, payload)  # type: ignore[arg-type]
        except aiohttp.ClientResponseError as exc:
            message = f"HTTP {exc.status} {exc.message}"
            if exc.status == 429:
                raise RateLimited(message, url=ep.redacted, code=429) from None
            raise Transient(message, url=ep.redacted, code=exc.status) from None
        except ValueError as exc:  # the body is not JSON (json.JSONDecodeError), e.g. a load balancer's page
            text = scrub(f"reply is not JSON: {type(exc).__name__}: {exc}", self._urls)
            raise MalformedReply(text[:300], url=ep.redacted) from None
        except (TimeoutError, aiohttp.ClientError, OSError, Web3Exception) as exc:
            text = scrub(f"{type(exc).__name__}: {exc}", self._urls)
            raise Transient(text, url=ep.redacted) from None
        elapsed = (time.perf_counter() - started) * 1000
        ep.latency_ms = elapsed if ep.latency_ms == 0 else 0.8 * ep.latency_ms + 0.2 * elapsed
        return reply

    def _check(self, ep: Endpoint, reply: Any, expect: Expect | None = None) -> Any:
        if not isinstance(reply, dict):
            raise MalformedReply(f"malformed JSON-RPC reply: {type(reply).__name__}", url=ep.redacted)
        if (error := reply.get("error")) is not None:
            if not isinstance(error, dict):
                raise Transient(scrub(f"malformed error: {error!r:.200}", self._urls), url=ep.redacted)
            message = scrub(str(error.get("message", "")), self._urls)
            raise classify_rpc_error(error.get("code"), message, ep.redacted)
        if "result" not in reply:
            raise MalformedReply("JSON-RPC reply without result", url=ep.redacted)
        if reply.get("id") is None:  # only an error may come back without the request's id
            raise MalformedReply("JSON-RPC result with a null id", url=ep.redacted)
        if expect is None:
            return reply["result"]
        try:
            return expect(reply["result"])
        except MalformedReply as exc:
            raise MalformedReply(scrub(exc.reason, self._urls), url=ep.redacted) from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise MalformedReply(scrub(f"unexpected reply: {type(exc).__name__}: {exc}", self._urls)[:300],
                                 url=ep.redacted) from None

    async def _one(self, ep: Endpoint, method: str, params: list[Any], expect: Expect | None) -> Any:
        return self._check(ep, await self._raw(ep, method, params), expect)

    async def _many(
        self, ep: Endpoint, calls: Sequence[tuple[str, list[Any]]], expect: Expect | None
    ) -> list[Any]:
        replies = await self._raw(ep, "batch", list(calls))
        if isinstance(replies, dict):  # a batch-level error (e.g. -32014 too many calls in batch)
            self._check(ep, replies)
        if not isinstance(replies, list) or len(replies) != len(calls):
            raise MalformedReply("batch reply does not match the request", url=ep.redacted)
        ids = [r.get("id") if isinstance(r, dict) else None for r in replies]
        if not all(type(i) is int for i in ids) or len(set(ids)) != len(ids) or max(ids) - min(ids) != len(ids) - 1:
            # the request's ids are consecutive: anything else cannot be matched to the calls
            raise MalformedReply(f"batch reply ids are missing, repeated or not the request's: {ids[:10]}",
                                 url=ep.redacted)
        by_id = sorted(replies, key=lambda r: r["id"])
        return [self._check(ep, r, expect) for r in by_id]

    def health(self) -> list[dict[str, Any]]:
        return [e.snapshot() for e in self.endpoints]

    async def close(self) -> None:
        for ep in self.endpoints:
            try:
                await ep.provider.disconnect()
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                log.debug("closing %s: %s", ep.redacted, type(exc).__name__)
