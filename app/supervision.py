"""Supervision: no silent death. Every long-running loop (the chain watchers, the reconciler) and every scheduled
job (the reconciler interval, the balance check) runs through a `Supervisor`, which survives ANY exception of
the work: it logs it with its traceback, counts it per loop (`errors_total`, the `settle_loop_errors_total{loop}`
of a metrics endpoint, were there one) and retries after an exponential backoff with jitter, capped. Only
cancellation (shutdown) ends a loop.

The supervisor also remembers, per loop, when it last succeeded and whether its last attempt failed, so that
`/v1/health` can say which loop is failing or has not succeeded within a few intervals (`stale_after`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import monotonic

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LoopState:
    """What health needs to know about one supervised loop. `interval`: seconds within which it is expected to
    succeed again (None: the loop never returns, e.g. a watcher, whose progress is the chain's stored state)."""

    name: str
    interval: float | None
    started_at: datetime = field(default_factory=_now)
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    errors_total: int = 0
    consecutive_errors: int = 0

    @property
    def failing(self) -> bool:
        """Its last attempt failed (and nothing succeeded since)."""
        return self.consecutive_errors > 0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n (from 1) waits initial * 2**(n-1), capped at `maximum`, times
    a random factor in [0.5, 1) so that loops failing together do not retry together."""

    initial: float = 1.0
    maximum: float = 60.0

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * 2 ** max(0, min(attempt - 1, 30)))
        return base * random.uniform(0.5, 1.0)


class Supervisor:
    """The supervised loops and jobs of one process (in `settle serve`: `app.state.supervisor`)."""

    def __init__(self, backoff: Backoff | None = None, *, stale_intervals: float = 5.0,
                 stale_min_seconds: float = 30.0) -> None:
        self.backoff = backoff or Backoff()
        self.stale_intervals = stale_intervals
        self.stale_min_seconds = stale_min_seconds
        self.loops: dict[str, LoopState] = {}

    def track(self, name: str, interval: float | None = None) -> LoopState:
        if name not in self.loops:
            self.loops[name] = LoopState(name, interval)
        return self.loops[name]

    def stale_after(self, interval: float) -> timedelta:
        """How long something expected every `interval` seconds may go without success before it is stale."""
        return timedelta(seconds=max(self.stale_intervals * interval, self.stale_min_seconds))

    def succeeded(self, name: str) -> None:
        state = self.track(name)
        state.last_success_at, state.consecutive_errors = _now(), 0

    def failed(self, name: str, exc: BaseException) -> None:
        state = self.track(name)
        state.errors_total += 1
        state.consecutive_errors += 1
        state.last_error, state.last_error_at = f"{type(exc).__name__}: {exc}"[:500], _now()
        log.error("%s failed (%d in a row, %d in all): %s", name, state.consecutive_errors, state.errors_total,
                  state.last_error, exc_info=exc)

    async def attempt(self, name: str, work: Callable[[], Awaitable[object]]) -> bool:
        """Run `work` once: True if it succeeded; any exception is recorded, logged and swallowed."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job wrapper: whatever escapes the work must not end the loop
            self.failed(name, exc)
            return False
        self.succeeded(name)
        return True

    def job(self, name: str, work: Callable[[], Awaitable[object]], interval: float
            ) -> Callable[[], Awaitable[bool]]:
        """A scheduled job (APScheduler) expected to succeed every `interval` seconds, supervised."""
        self.track(name, interval)

        async def run() -> bool:  # a coroutine function, so that APScheduler awaits it
            return await self.attempt(name, work)

        return run

    async def pause(self, name: str, stop: asyncio.Event) -> None:
        """Wait the backoff for `name`'s consecutive failures, or until `stop`."""
        delay = self.backoff.delay(self.track(name).consecutive_errors)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)

    async def run_forever(self, name: str, work: Callable[[], Awaitable[object]], stop: asyncio.Event, *,
                          interval: float | None = None) -> None:
        """Run `work` until `stop` is set, starting it again after any exception (backoff) or early return.
        A run that lasted longer than the backoff cap before failing starts the backoff again from the
        beginning: it had recovered."""
        self.track(name, interval)
        while not stop.is_set():
            started = monotonic()
            ok = await self.attempt(name, work)
            if stop.is_set():
                return
            state = self.loops[name]
            if not ok and monotonic() - started > self.backoff.maximum:
                state.consecutive_errors = 1
            if ok:
                log.debug("%s returned before shutdown; starting it again", name)
            await self.pause(name, stop)


def watcher_loop(chain: str) -> str:
    """The supervised loop name of a chain's watcher (health pairs it with the chain's stored state)."""
    return f"watcher {chain}"


# ---- health ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainReport:
    """What the chain's stored state says (chain_status): `updated_at` is its last report, success or failure;
    `last_error_at` its last failure. `loop`: the name of this process's watcher loop for it."""

    name: str
    poll_interval: float
    updated_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    loop: str


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _age(now: datetime, since: datetime) -> str:
    return f"{(now - since).total_seconds():.0f} s"


def health_problems(supervisor: Supervisor, chains: list[ChainReport], now: datetime | None = None) -> list[str]:
    """Why health is degraded, naming the chain or loop: a chain that has not reported within `stale_after` of
    its poll interval, or whose last report is a failure; a watcher of this process that failed since its
    chain's last report; a job that failed last time or has not succeeded within `stale_after` of its interval.
    Empty: nothing is known to be wrong."""
    now = now or _now()
    problems: list[str] = []
    for c in chains:
        updated, errored = _aware(c.updated_at), _aware(c.last_error_at)
        if updated is not None and now - updated > supervisor.stale_after(c.poll_interval):
            problems.append(f"chain {c.name}: no report for {_age(now, updated)}")
        elif updated is not None and errored is not None and errored >= updated:
            problems.append(f"chain {c.name}: last poll failed: {c.last_error}")
        loop = supervisor.loops.get(c.loop)
        if loop is not None and loop.failing and loop.last_error_at is not None and (
                updated is None or loop.last_error_at > updated):
            problems.append(f"{loop.name}: failing ({loop.consecutive_errors} in a row): {loop.last_error}")
    watchers = {c.loop for c in chains}
    for loop in supervisor.loops.values():
        if loop.interval is None:
            if loop.failing and loop.name not in watchers:
                problems.append(f"{loop.name}: failing ({loop.consecutive_errors} in a row): {loop.last_error}")
            continue
        if loop.failing:
            problems.append(f"{loop.name}: last run failed ({loop.consecutive_errors} in a row): {loop.last_error}")
        elif now - (last := loop.last_success_at or loop.started_at) > supervisor.stale_after(loop.interval):
            problems.append(f"{loop.name}: no success for {_age(now, last)}")
    return problems
