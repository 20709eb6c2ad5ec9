"""Reconciliation benchmark: N transfers and N records (mostly matching, a few percent of each break type) written
straight into the database, then in the same run: a bare SQL join of the two tables on the matching keys (the
baseline), a full reconciler pass, and an incremental pass over one new block's transfers.

    .venv/bin/python bench/recon.py [--n 1000000] [--db sqlite,postgres] [--postgres-url URL]

WARNING: the PostgreSQL database's `public` schema is dropped and re-created (default database `settle_bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import recon_repo
from app.persistence.db import make_engine, sync_url
from app.persistence.migrate import upgrade
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.settings import Settings
from wallets import to_checksum

TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
START = datetime(2026, 11, 26, tzinfo=UTC)
WALLETS = 50_000


_CHECKSUMMED: dict[tuple[int, int], str] = {}


def addr(i: int, tag: int) -> str:
    """A checksummed address, as the indexer stores them."""
    if (i, tag) not in _CHECKSUMMED:
        _CHECKSUMMED[(i, tag)] = to_checksum("0x" + f"{tag:02x}{i:038x}")
    return _CHECKSUMMED[(i, tag)]


def dataset(n: int, rng: random.Random) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Transfers into deposit wallets and the records that explain them, with a known mix of breaks."""
    transfers, records, mix = [], [], {"tx_hash": 0, "deposit_address": 0, "unmatched_transfer": 0,
                                       "missing_transfer": 0, "amount_mismatch": 0, "ambiguous": 0}
    for i in range(n):
        wallet = addr(i % WALLETS, 1)
        when = START + timedelta(seconds=i * 86_400 // n)
        amount = 1_000_000 + i  # distinct per wallet and window: the deposit rule finds one candidate
        tx = "0x" + f"{i:064x}"
        transfers.append({"id": i + 1, "chain_id": 1, "token": TOKEN, "sender": addr(rng.randrange(10**6), 2),
                          "recipient": wallet, "amount": amount, "tx_hash": tx, "log_index": i,
                          "block_number": i // 25, "block_hash": "0x" + f"{i // 25:064x}", "block_time": when,
                          "state": "finalized", "seen_at": when, "confirmed_at": when, "finalized_at": when})
        roll = rng.random()
        base = {"source": "core", "external_id": f"r{i}", "version": 1, "kind": "deposit", "chain_id": 1,
                "token": TOKEN, "amount": amount, "wallet": wallet, "counterparty": None, "tx_hash": None,
                "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
                "created_at": when, "expected_by": None, "ingested_at": when}
        if roll < 0.01:
            mix["unmatched_transfer"] += 1
            continue
        if roll < 0.02:
            mix["missing_transfer"] += 1
            records.append({**base, "wallet": addr(i % WALLETS, 3), "tx_hash": None})
            continue
        if roll < 0.025:
            mix["amount_mismatch"] += 1
            records.append({**base, "amount": amount + 1, "tx_hash": tx})
            continue
        if roll < 0.03:
            mix["ambiguous"] += 1  # a second identical transfer to the same wallet
            transfers.append({**transfers[-1], "id": n + i + 1, "tx_hash": "0x" + f"{n + i:064x}", "log_index": n + i})
            records.append(base)
            continue
        if roll < 0.5:
            mix["tx_hash"] += 1
            records.append({**base, "tx_hash": tx})
        else:
            mix["deposit_address"] += 1
            records.append(base)
    return transfers, records, mix


def settings_for(url: str, work: Path) -> Settings:
    wallets = [{"address": addr(i, 1), "label": f"dep-{i}", "kind": "deposit", "segregation": "customer"}
               for i in range(WALLETS)]
    return Settings(database_url=url, data_dir=work, chains=[
        {"name": "bench", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "bench", "address": TOKEN, "symbol": "USDC", "decimals": 6}],
        wallets=wallets)  # type: ignore[list-item]


async def load(url: str, transfers: list[dict], records: list[dict], *, mark: bool = False) -> None:
    """Write rows straight into the tables; `mark`: also queue them for the reconciler, as the indexer and the
    ingest do (a block range, record keys)."""
    engine = make_engine(url)
    async with engine.begin() as conn:
        for table, rows in ((Transfer.__table__, transfers), (Record.__table__, records)):
            for i in range(0, len(rows), 20_000):
                await conn.execute(table.insert(), rows[i:i + 20_000])
        if mark:
            blocks = [t["block_number"] for t in transfers]
            await recon_repo.mark_range(conn, 1, min(blocks), max(blocks))
            await recon_repo.mark_items(conn, record_keys=[(r["source"], r["external_id"]) for r in records])
    await engine.dispose()


def bare_join_seconds(url: str) -> tuple[float, int]:
    """The baseline: the two tables joined on the matching keys, in SQL (tx hash; else wallet + token + amount)."""
    engine = create_engine(sync_url(url))
    with engine.connect() as conn:
        started = time.perf_counter()
        by_tx = conn.execute(text("SELECT count(*) FROM transfers t JOIN records r ON r.chain_id = t.chain_id "
                                  "AND r.tx_hash = t.tx_hash")).scalar()
        by_addr = conn.execute(text("SELECT count(*) FROM transfers t JOIN records r ON r.chain_id = t.chain_id "
                                    "AND r.wallet = t.recipient AND r.token = t.token AND r.amount = t.amount "
                                    "AND r.tx_hash IS NULL")).scalar()
        seconds = time.perf_counter() - started
    engine.dispose()
    return seconds, int(by_tx or 0) + int(by_addr or 0)


def join_and_write_seconds(url: str) -> float:
    """A second baseline: the same join, with its pairs written to a table indexed both ways (by transfer, by
    record): the least a reconciler must persist to answer "is this transfer / record matched?"."""
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_pairs (transfer_id BIGINT, source VARCHAR, external_id VARCHAR)"))
        conn.execute(text("CREATE INDEX ix_bench_pairs_t ON bench_pairs (transfer_id)"))
        conn.execute(text("CREATE INDEX ix_bench_pairs_r ON bench_pairs (source, external_id)"))
    with engine.begin() as conn:
        started = time.perf_counter()
        conn.execute(text("INSERT INTO bench_pairs SELECT t.id, r.source, r.external_id FROM transfers t JOIN "
                          "records r ON r.chain_id = t.chain_id AND r.tx_hash = t.tx_hash"))
        conn.execute(text("INSERT INTO bench_pairs SELECT t.id, r.source, r.external_id FROM transfers t JOIN "
                          "records r ON r.chain_id = t.chain_id AND r.wallet = t.recipient AND r.token = t.token "
                          "AND r.amount = t.amount AND r.tx_hash IS NULL"))
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_pairs"))
    engine.dispose()
    return seconds


def reset(target: str, url: str) -> None:
    if target == "postgres":
        admin = create_engine(sync_url(url.rsplit("/", 1)[0] + "/postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = url.rsplit("/", 1)[1]
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        engine = create_engine(sync_url(url))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    upgrade(url)


async def incremental(url: str, engine: AsyncEngine, settings: Settings, n: int, block: int) -> float:
    """One new block's worth of transfers (25) and their records, then one reconciler pass (on a long-lived
    engine, as in `settle serve`: its statement cache is warm after the first pass)."""
    when = START + timedelta(days=1, seconds=block * 12)
    transfers, records = [], []
    for j in range(25):  # half name their tx hash, half are deposits matched by address
        i = 10 * n + 100 * block + j
        tx = "0x" + f"{i:064x}"
        transfers.append({"id": i + 1, "chain_id": 1, "token": TOKEN, "sender": addr(i, 2),
                          "recipient": addr(j * 997 % WALLETS, 1), "amount": 7_000_000 + i, "tx_hash": tx,
                          "log_index": j, "block_number": n + block, "block_hash": "0x" + f"{n + block:064x}",
                          "block_time": when, "state": "finalized", "seen_at": when, "confirmed_at": when,
                          "finalized_at": when})
        records.append({"source": "core", "external_id": f"inc-{i}", "version": 1, "kind": "deposit",
                        "chain_id": 1, "token": TOKEN, "amount": 7_000_000 + i, "wallet": addr(j * 997 % WALLETS, 1),
                        "counterparty": None, "tx_hash": tx if j % 2 else None, "log_index": None,
                        "reference": None, "segregation": "customer", "status": "completed", "created_at": when,
                        "expected_by": None, "ingested_at": when})
    await load(url, transfers, records, mark=True)
    started = time.perf_counter()
    summary = await reconcile_once(settings, engine, now=START + timedelta(days=3))
    seconds = time.perf_counter() - started
    assert summary.matched == 25 and not summary.full, summary  # the pass did the work, incrementally
    return seconds


async def incremental_only(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="settle-recon-bench-"))
    for target in args.db.split(","):
        url = args.postgres_url if target == "postgres" else args.sqlite_path
        settings = settings_for(url, work)
        engine = make_engine(url)
        async with engine.connect() as conn:
            first = int(await conn.scalar(text("SELECT max(block_number) FROM transfers")) or 0) - args.n + 1
        incs = [await incremental(url, engine, settings, args.n, block) for block in range(first, first + 11)]
        await engine.dispose()
        print(f"{target}: incremental passes over one new block (25 transfers, 25 records) on the existing "
              f"database: first {incs[0] * 1000:.0f} ms (statements compiled), then median "
              f"{sorted(incs[1:])[5] * 1000:.0f} ms ({', '.join(f'{s * 1000:.0f}' for s in incs[1:])})", flush=True)
    return 0


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--db", default="sqlite,postgres")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/settle_bench")
    p.add_argument("--sqlite-path", default=None, help="with --incremental-only: the SQLite URL to reuse")
    p.add_argument("--incremental-only", action="store_true",
                   help="on the database a previous run left (same --n): only time incremental passes, on a quiet "
                        "machine; the blocks continue after the ones already there")
    args = p.parse_args()
    if args.incremental_only:
        return await incremental_only(args)
    work = Path(tempfile.mkdtemp(prefix="settle-recon-bench-"))
    started = time.perf_counter()
    transfers, records, mix = dataset(args.n, random.Random(42))
    gc.freeze()  # the dataset's millions of dicts stay for the whole run: keep the collector from rescanning them
    print(f"dataset: {len(transfers):,} transfers, {len(records):,} records in {time.perf_counter() - started:.1f} s;"
          f" mix {mix}", flush=True)
    for target in args.db.split(","):
        url = f"sqlite+aiosqlite:///{work}/recon.db" if target == "sqlite" else args.postgres_url
        reset(target, url)
        started = time.perf_counter()
        await load(url, transfers, records)
        if target == "postgres":  # what autovacuum does after a bulk load (it is off on this machine)
            analyze = create_engine(sync_url(url), isolation_level="AUTOCOMMIT")
            with analyze.connect() as conn:
                conn.execute(text("ANALYZE"))
            analyze.dispose()
        print(f"{target}: loaded in {time.perf_counter() - started:.1f} s", flush=True)
        join_s, joined = bare_join_seconds(url)
        write_s = join_and_write_seconds(url)
        settings = settings_for(url, work)
        engine = make_engine(url)
        started = time.perf_counter()
        summary = await reconcile_once(settings, engine, now=START + timedelta(days=3))
        full_s = time.perf_counter() - started
        print(f"{target}: full pass phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in summary.timings.items()),
              flush=True)
        if target == "postgres":  # flush the full pass's writes now rather than during the passes timed next
            async with engine.connect() as conn:
                await conn.exec_driver_sql("CHECKPOINT")
        incs = [await incremental(url, engine, settings, args.n, block) for block in range(1, 8)]
        await engine.dispose()
        print(f"{target}: bare SQL join {join_s:.2f} s ({joined:,} pairs); full reconciliation {full_s:.2f} s "
              f"(x{full_s / join_s:.1f} the join; {summary.matched:,} matches, {len(summary.opened):,} breaks); "
              f"join + write of the pairs {write_s:.2f} s (full pass x{full_s / write_s:.1f} that); "
              f"incremental pass over one new block (25 transfers, 25 records): first {incs[0] * 1000:.0f} ms "
              f"(statements compiled), then median {sorted(incs[1:])[3] * 1000:.0f} ms "
              f"({', '.join(f'{s * 1000:.0f}' for s in incs[1:])})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
