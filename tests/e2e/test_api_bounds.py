"""Bounds of the read endpoints on a large registry and history: `direction=` over 50,000 wallets, and the
break detail's and the ops queue's suggestion pools capped however many free items share a wallet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.persistence.tables import Transfer, WalletRow
from app.settings import Settings
from tests.support.harness import address_for, bearer

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
WHEN = datetime(2026, 11, 26, 9, tzinfo=UTC)
OUTSIDE = address_for("bounds-outside")


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path,
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
