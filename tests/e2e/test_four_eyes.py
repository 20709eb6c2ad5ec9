"""Four-eyes through the API: a key names its person and four-eyes compares persons (one person's two keys
cannot propose and approve); the reasons that wait for a second person come from the settings (default
write_off, refund, other); an approval re-validates the break (an item matched meanwhile: 409); the service's own
actor names cannot be key names or persons, from the API's service or the CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.access import Scope, create_key
from app.api.main import create_app
from app.errors import BadRequest
from app.persistence import recon_repo
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.settings import Settings
from tests.support.harness import address_for, bearer, write_toml

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DEP = address_for("fe-dep")
CUSTOMER = address_for("fe-customer")
WHEN = datetime(2026, 11, 26, 9, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, url: str, **recon: object) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
        wallets=[{"address": DEP, "label": "d", "kind": "deposit", "segregation": "customer"}],  # type: ignore[list-item]
        recon=recon)  # type: ignore[arg-type]


def _transfer(i: int, amount: int) -> dict:
    return {"id": i, "chain_id": 1, "token": USDC, "sender": CUSTOMER, "recipient": DEP, "amount": amount,
            "tx_hash": f"0x{i:064x}", "log_index": 0, "block_number": i, "block_hash": f"0x{i:064x}",
            "block_time": WHEN, "state": "finalized", "seen_at": WHEN, "confirmed_at": WHEN, "finalized_at": WHEN}


async def _stray_breaks(settings: Settings, engine: AsyncEngine, n: int) -> list[int]:
    """`n` unmatched transfers (ids 1..n), each an open break; a record `late` (2 days late: never matched
    automatically) of transfer 1's amount."""
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [_transfer(i, 1_000_000 * i) for i in range(1, n + 1)])
        await conn.execute(Record.__table__.insert(), [{
            "source": "core", "external_id": "late", "version": 1, "kind": "deposit", "chain_id": 1, "token": USDC,
            "amount": 1_000_000, "wallet": DEP, "segregation": "customer", "status": "completed",
            "created_at": WHEN + timedelta(days=2), "ingested_at": WHEN + timedelta(days=2)}])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=4))
    async with engine.connect() as conn:
        return [b["id"] for b in sorted(await recon_repo.open_breaks(conn), key=lambda b: b["transfer_ids"])
                if b["type"] == "unmatched_transfer"]


async def _key(engine: AsyncEngine, name: str, person: str | None, *scopes: Scope) -> dict[str, str]:
    key = await create_key(engine, name=name, person=person, scopes=list(scopes), actor="test")
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("configured", "waiting"), [
    (None, {"write_off", "refund", "other"}),
    (["spam", "refund"], {"spam", "refund"}),
])
async def test_four_eyes_compares_persons_for_the_configured_reasons(
        configured: list[str] | None, waiting: set[str], engine: AsyncEngine, database_url: str,
        tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url, **({"four_eyes_reasons": configured} if configured else {}))
    reasons = ["write_off", "refund", "other", "spam", "customer_error"]
    breaks = await _stray_breaks(settings, engine, len(reasons))
    laptop = await _key(engine, "ann-laptop", "ann", Scope.OPS, Scope.APPROVER)
    phone = await _key(engine, "ann-phone", "ann", Scope.APPROVER)
    bo = await _key(engine, "bo", None, Scope.APPROVER)
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for break_id, reason in zip(breaks, reasons, strict=True):
            proposed = await client.post(f"/v1/breaks/{break_id}/resolve", headers=laptop,
                                         json={"reason": reason, "note": f"{reason}: checked"})
            assert proposed.json()["status"] == ("awaiting_approval" if reason in waiting else "resolved"), reason
            if reason not in waiting:
                continue
            for same_person in (laptop, phone):  # another key of the same person is the same person
                refused = await client.post(f"/v1/breaks/{break_id}/approve", headers=same_person)
                assert refused.status_code == 403, refused.text
            approved = await client.post(f"/v1/breaks/{break_id}/approve", headers=bo)
            assert approved.json() == {"id": break_id, "status": "resolved"}
            detail = (await client.get(f"/v1/breaks/{break_id}", headers=laptop)).json()
            assert detail["resolution"]["person"] == "ann" and detail["resolution"]["approved_by"] == "bo"
    async with engine.connect() as conn:
        classified = dict((await conn.execute(text("SELECT transfer_id, reason FROM transfer_classifications")
                                              )).all())
    assert classified == {i + 1: reason for i, reason in enumerate(reasons)}  # each with its own reason


async def test_an_item_matched_while_awaiting_approval_cannot_be_written_off(
        engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    (break_id,) = await _stray_breaks(settings, engine, 1)
    ann, bo = await bearer(engine, "ops", name="ann"), await bearer(engine, "approver", name="bo")
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        proposed = await client.post(f"/v1/breaks/{break_id}/resolve", headers=ann,
                                     json={"reason": "write_off", "note": "unknown sender"})
        assert proposed.json()["status"] == "awaiting_approval"
        matched = await client.post("/v1/matches", headers=ann, json={
            "transfer_ids": [1], "record_keys": [{"source": "core", "external_id": "late"}]})
        assert matched.status_code == 201, matched.text
        refused = await client.post(f"/v1/breaks/{break_id}/approve", headers=bo)
        assert refused.status_code == 409 and "matched" in refused.json()["detail"]
        assert (await client.get(f"/v1/breaks/{break_id}", headers=ann)).json()["status"] == "awaiting_approval"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM transfer_classifications"))).scalar() == 0


@pytest.mark.parametrize("reserved", ["reconciler", "config", "cli", "system", "System"])
async def test_the_services_own_actor_names_are_not_key_names_or_persons(reserved: str,
                                                                         engine: AsyncEngine) -> None:
    with pytest.raises(BadRequest) as as_name:
        await create_key(engine, name=reserved, scopes=[Scope.OPS], actor="test")
    with pytest.raises(BadRequest) as as_person:
        await create_key(engine, name="ann", person=reserved, scopes=[Scope.OPS], actor="test")
    assert (as_name.value.field, as_person.value.field) == ("name", "person")


async def test_keys_create_stores_the_person_from_the_cli(engine: AsyncEngine, database_url: str,
                                                          tmp_path: Path) -> None:
    config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}], wallets=[])

    def settle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", "--config", str(config), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    made = settle("keys", "create", "--name", "ann-laptop", "--person", "ann", "--scope", "ops")
    assert made.returncode == 0, made.stderr
    assert settle("keys", "create", "--name", "solo", "--scope", "ops").returncode == 0
    refused = settle("keys", "create", "--name", "reconciler", "--scope", "ops")
    assert refused.returncode != 0 and "reserved" in refused.stderr
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name, person FROM api_keys ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [("ann-laptop", "ann"), ("solo", "solo")]
