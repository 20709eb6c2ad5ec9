"""API benchmark: the server in its own process on a PostgreSQL database of N transfers (the reconciliation
bench's data set, reconciled), loaded from this process over HTTP. In the same run, a trivial endpoint
(`/v1/health`) on the same server is the baseline; the bench prints requests/s, p50 and p99 per endpoint and the
ratios against it.

    .venv/bin/python bench/api.py [--n 1000000] [--reuse] [--seconds 10] [--concurrency 8]

`--reuse` keeps the database a previous `bench/recon.py` or `bench/api.py` run left (same --n) instead of
loading and reconciling it again. WARNING: without it, the database's `public` schema is dropped (default
database `settle_bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson
from sqlalchemy import create_engine, text

from app.access import Scope, create_key
from app.persistence.db import make_engine, sync_url
from app.persistence.migrate import upgrade
from app.reconciler import reconcile_once
from bench.recon import START, TOKEN, WALLETS, addr, dataset, load, reset, settings_for

URL = "postgresql://postgres@127.0.0.1:5432/settle_bench"


def serve(port: int, n: int) -> None:
    """The server process: uvicorn with the app on the bench settings."""
    import uvicorn

    from app.api.main import create_app
    from app.indexer import tune_gc_for_indexing

    settings = settings_for(URL, Path(tempfile.mkdtemp()))
    app = create_app(settings)
    tune_gc_for_indexing()  # as `settle serve` does
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def prepare(n: int, reuse: bool) -> str:
    if not reuse:
        transfers, records, _ = dataset(n, random.Random(42))
        reset("postgres", URL)
        await load(URL, transfers, records)
        del transfers, records
        analyze = create_engine(sync_url(URL), isolation_level="AUTOCOMMIT")
        with analyze.connect() as conn:
            conn.execute(text("ANALYZE"))
        analyze.dispose()
        engine = make_engine(URL)
        await reconcile_once(settings_for(URL, Path(tempfile.mkdtemp())), engine, now=START + timedelta(days=3))
        await engine.dispose()
    upgrade(URL)  # a reused database may predate the latest migrations
    # what autovacuum does in production (it is off on the bench machine): visibility maps for index-only scans,
    # statistics for the plans
    vacuum = create_engine(sync_url(URL), isolation_level="AUTOCOMMIT")
    with vacuum.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    vacuum.dispose()
    engine = make_engine(URL)
    try:
        return await create_key(engine, name=f"bench-{os.getpid()}-{int(time.time())}", scopes=list(Scope),
                                actor="bench")
    finally:
        await engine.dispose()


async def load_test(base: str, key: str, path: str, params: list[dict] | None, seconds: float,
                    concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(1)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                reply = await client.get(path, params=rng.choice(params) if params else None)
                latencies.append(time.perf_counter() - started)
                if reply.status_code >= 400:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "n": len(latencies), "errors": errors}


async def feed_bench(base: str, key: str, *, limit: int = 5000, most: int = 500_000) -> None:
    """One reader pulling the feed by cursor from 0 (up to `most` events), against the bare query of the same
    pages on the same database in this process (the baseline: no HTTP, no rendering). The reader freezes what
    it allocated before and collects the young generation less often, as a consumer parsing millions of events
    would (`settle serve` does the same); otherwise collections of the bench's own objects land in the figure."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        after, events, started = 0, 0, time.perf_counter()
        while events < most:
            page = orjson.loads((await client.get("/v1/feed", params={"after": after, "limit": limit})).content)
            events += len(page["events"])
            after = page["next_after"]
            if len(page["events"]) < limit:
                break
        elapsed = time.perf_counter() - started
    engine = create_engine(sync_url(URL))
    with engine.connect() as conn:
        bare_started, last, bare = time.perf_counter(), 0, 0
        while bare < events:
            rows = conn.execute(text("SELECT * FROM feed_events WHERE seq > :a ORDER BY seq LIMIT :n"),
                                {"a": last, "n": limit}).all()
            if not rows:
                break
            bare += len(rows)
            last = rows[-1].seq
        bare_elapsed = time.perf_counter() - bare_started
    engine.dispose()
    rate, bare_rate = events / elapsed, bare / bare_elapsed
    print(f"/v1/feed by cursor, limit={limit}: {events:,} events in {elapsed:.2f} s = {rate:,.0f} events/s "
          f"(bare SELECT of the same pages: {bare_rate:,.0f} events/s; {rate / bare_rate:.2f}x)", flush=True)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    key = await prepare(args.n, args.reuse)
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(args.port), "--n", str(args.n)])
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(600):  # start-up seeds the config's wallets into the registry on a fresh database
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        wallets = [{"wallet": addr(i, 1), "token": TOKEN} for i in range(0, WALLETS, 97)]
        runs = {"/v1/health (baseline)": ("/v1/health", None),
                "/v1/balances?wallet=&token= (one pair)": ("/v1/balances", wallets),
                "/v1/transfers/unmatched?limit=50": ("/v1/transfers/unmatched", [{"limit": 50}]),
                "/v1/transfers?limit=100": ("/v1/transfers", [{"limit": 100}])}
        results = {}
        for label, (path, params) in runs.items():
            await load_test(base, key, path, params, 1.0, args.concurrency)  # warm up
            results[label] = await load_test(base, key, path, params, args.seconds, args.concurrency)
        base_rps = results["/v1/health (baseline)"]["rps"]
        for label, r in results.items():
            print(f"{label:42} {r['rps']:8.0f} req/s ({r['rps'] / base_rps:4.2f}x baseline)  p50 {r['p50']:6.1f} ms"
                  f"  p99 {r['p99']:6.1f} ms  ({r['n']:,} requests, {r['errors']} errors)", flush=True)
        await feed_bench(base, key)
        started = time.perf_counter()
        everything = httpx.get(f"{base}/v1/balances", headers={"Authorization": f"Bearer {key}"}, timeout=600)
        print(f"/v1/balances (all {len(everything.json()['items']):,} pairs, one request): "
              f"{time.perf_counter() - started:.2f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    if "--serve" in sys.argv:  # the server process: uvicorn runs its own event loop
        serve(int(sys.argv[sys.argv.index("--port") + 1]), 0)
        raise SystemExit(0)
    raise SystemExit(asyncio.run(main()))
