"""The indexer alone, in its own process, so that its peak RSS and CPU are its own (run by bench/backfill.py).

    python bench/indexer_run.py '<spec as JSON>'

Builds the settings from the spec, runs `index_chain(..., once=True)` and prints one JSON line: seconds (the
indexing only, not imports or start-up), peak RSS (VmHWM), chunks committed, and CPU seconds spent meanwhile by
this process, its garbage collector, anvil and the whole machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.devchain import CHAIN_ID, deposit_addresses

INDEXER_RUN = Path(__file__).resolve()
_HZ = os.sysconf("SC_CLK_TCK")


def hwm_kib() -> int:
    """Peak resident set of this process (VmHWM). Not ru_maxrss: across fork/exec that also counts the parent's
    pages (the benchmark parent holds raw replies), while VmHWM starts afresh with the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_ticks(pid: int | None = None) -> int:
    """Busy clock ticks: of process `pid` (utime + stime), or of the whole machine (all but idle and iowait)."""
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4]


def gc_timer() -> Callable[[], float]:
    """Start timing the cyclic garbage collector; returns a function giving the seconds spent in it so far."""
    spent = [0.0, 0.0]

    def callback(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            spent[1] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - spent[1]

    gc.callbacks.append(callback)
    return lambda: spent[0]


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from app.indexer import index_chain
    from app.persistence.db import make_engine
    from app.settings import Settings

    wallets = [{"address": a, "label": f"dep-{i}", "kind": "deposit", "segregation": "customer"}
               for i, a in enumerate(deposit_addresses(spec["wallets"]))]
    settings = Settings(
        database_url=spec["url"], data_dir=Path(spec["data_dir"]),
        chains=[{"name": "bench", "chain_id": CHAIN_ID, "rpc_urls": [spec["rpc_url"]],
                 "start_block": spec["first_block"], "confirmations": 0, "finality": 1,
                 "max_getlogs_range": spec["max_range"], "mode": spec["mode"]}],
        tokens=[{"chain": "bench", "address": spec["token"], "symbol": "USDC", "decimals": 6}],
        wallets=wallets,
    )  # type: ignore[arg-type]
    engine = make_engine(spec["url"])
    chunks = 0
    cpu: dict[str, float] = {}

    def progress(_name: str, _hi: int, _head: int) -> None:
        nonlocal chunks
        chunks += 1

    async def index() -> float:
        ticks = (cpu_ticks(), cpu_ticks(spec["anvil_pid"]), time.process_time())
        started = time.perf_counter()
        await index_chain(settings, engine, settings.chains[0], once=True, on_progress=progress)
        elapsed = time.perf_counter() - started
        cpu["machine"] = (cpu_ticks() - ticks[0]) / _HZ
        cpu["anvil"] = (cpu_ticks(spec["anvil_pid"]) - ticks[1]) / _HZ
        cpu["indexer"] = time.process_time() - ticks[2]
        await engine.dispose()
        return elapsed

    rss_before = hwm_kib()
    if not spec.get("no_gc_tuning"):  # what `settle index` does at start-up
        from app.indexer import tune_gc_for_indexing

        tune_gc_for_indexing()
    gc_seconds = gc_timer()
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    seconds = asyncio.run(index())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    return {"seconds": seconds, "rss_before_kib": rss_before, "maxrss_kib": hwm_kib(), "chunks": chunks,
            "cpu": cpu | {"gc": gc_seconds()}}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
