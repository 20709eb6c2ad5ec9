"""Bounds of the read endpoints on a large registry and history: `direction=` over 50,000 wallets, and the
break detail's and the ops queue's suggestion pools capped however many free items share a wallet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.persistence.tables import Record, Transfer, WalletRow
from app.reconciler import reconcile_once
from app.settings import Settings
from app.suggestions import CANDIDATE_POOL
from tests.support.harness import address_for, bearer

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
WHEN = datetime(2026, 11, 26, 9, tzinfo=UTC)
OUTSIDE = address_for("bounds-outside")


def _settings(tmp_path: Path, url: str, wallets: list[dict] | None = None) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, wallets=wallets or [],
                    chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]},
                            {"name": "l2", "chain_id": 10, "rpc_urls": ["http://127.0.0.1:1"]}],
                    tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6},
                            {"chain": "l2", "address": USDC, "symbol": "USDC", "decimals": 6}]
                    )  # type: ignore[list-item]


def _wallet_row(chain_id: int, address: str) -> dict:
    return {"chain_id": chain_id, "address": address, "label": "w", "kind": "deposit", "segregation": "customer",
            "start_block": None, "active": True, "source": "api", "revision": 1, "created_at": WHEN,
            "created_by": "test", "updated_at": WHEN}


def _transfer(i: int, chain_id: int, sender: str, recipient: str, amount: int = 1_000_000) -> dict:
    return {"id": i, "chain_id": chain_id, "token": USDC, "sender": sender, "recipient": recipient,
            "amount": amount, "tx_hash": f"0x{i:064x}", "log_index": 0, "block_number": i,
            "block_hash": f"0x{i:064x}", "block_time": WHEN + timedelta(minutes=i), "state": "finalized",
            "seen_at": WHEN, "confirmed_at": WHEN, "finalized_at": WHEN}


async def test_direction_without_a_wallet_works_with_50000_wallets_and_counts_per_chain(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    wallets = [address_for(f"bounds-w-{i}") for i in range(50_000)]
    a, b = wallets[0], wallets[-1]
    async with engine.begin() as conn:
        for i in range(0, len(wallets), 10_000):
            await conn.execute(WalletRow.__table__.insert(), [_wallet_row(1, w) for w in wallets[i:i + 10_000]])
        await conn.execute(WalletRow.__table__.insert(), [_wallet_row(10, b)])
        await conn.execute(Transfer.__table__.insert(), [
            _transfer(1, 1, OUTSIDE, a),   # in
            _transfer(2, 1, a, OUTSIDE),   # out
            _transfer(3, 1, a, b),         # internal
            _transfer(4, 10, OUTSIDE, a),  # a is not ours on chain 10: neither in nor out there
            _transfer(5, 10, b, OUTSIDE),  # b is: out
            _transfer(6, 1, OUTSIDE, OUTSIDE),
        ])
    app = create_app(_settings(tmp_path, database_url), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "treasury")) as client:
        got = {}
        for direction in ("in", "out", "internal"):
            for chain in (None, "eth", "l2"):
                reply = await client.get("/v1/transfers", params={"direction": direction,
                                                                  **({"chain": chain} if chain else {})})
                assert reply.status_code == 200, reply.text
                got[(direction, chain)] = [t["id"] for t in reply.json()["items"]]
        with_wallet = (await client.get("/v1/transfers", params={"direction": "out", "wallet": a})).json()
    assert got == {("in", None): [1], ("in", "eth"): [1], ("in", "l2"): [],
                   ("out", None): [2, 5], ("out", "eth"): [2], ("out", "l2"): [5],
                   ("internal", None): [3], ("internal", "eth"): [3], ("internal", "l2"): []}
    assert [t["id"] for t in with_wallet["items"]] == [2, 3]  # relative to `a`: to b is out


def _record(i: int, wallet: str, amount: int, created: datetime) -> dict:
    return {"source": "core", "external_id": f"r-{i:04}", "version": 1, "kind": "deposit", "chain_id": 1,
            "token": USDC, "amount": amount, "wallet": wallet, "counterparty": None, "tx_hash": None,
            "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
            "created_at": created, "expected_by": None, "ingested_at": created}


async def test_the_break_detail_and_the_queue_suggest_from_a_bounded_pool_nearest_in_time(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    """A deposit address with many free records: the suggestions come from the CANDIDATE_POOL records nearest in
    time to the transfer (half before, half after), not from every record on the wallet; an exact amount far
    away in time is outside the pool."""
    dep = address_for("bounds-dep")
    settings = _settings(tmp_path, database_url, [
        {"chain": "eth", "address": dep, "label": "d", "kind": "deposit", "segregation": "customer"}])
    at = WHEN + timedelta(minutes=1)  # the transfer's block time
    half = CANDIDATE_POOL // 2
    near = [_record(i, dep, 2_000_000 + i, at + timedelta(hours=i + 1)) for i in range(half + 20)]
    near += [_record(500 + i, dep, 3_000_000 + i, at - timedelta(hours=i + 1)) for i in range(half + 20)]
    far_exact = _record(999, dep, 1_000_000, at + timedelta(days=400))  # same amount, but outside the pool
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 1, OUTSIDE, dep, 1_000_000)])
        await conn.execute(Record.__table__.insert(), [*near, far_exact])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=500))
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "ops")) as client:
        queue = (await client.get("/v1/transfers/unmatched")).json()["items"]
        detail = (await client.get(f"/v1/breaks/{queue[0]['break_id']}")).json()
    # closest in amount among the pool: 2,000,000 (1 hour after) is nearer 1,000,000 than any 3,000,000 + i
    expected = ["r-0000", "r-0001", "r-0002"]
    assert [c["external_id"] for c in queue[0]["candidates"]] == expected
    assert [c["external_id"] for c in detail["transfers"][0]["candidates"]] == expected
