"""Record ingest: versioning, conflicts, all-or-nothing validation naming the field; the audit hash chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import audit, records_repo
from app.persistence.tables import AuditEntry, Record
from app.records import MAX_BATCH, RecordsRejected, ingest
from app.settings import Settings
from tests.support.harness import address_for

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DEP = address_for("deposit-rec")
BOB = address_for("bob-rec")


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
        wallets=[{"address": DEP, "label": "d", "kind": "deposit", "segregation": "customer"}])  # type: ignore[list-item]


def item(ext: str = "dep-1", **overrides: object) -> dict:
    return {"source": "core", "external_id": ext, "kind": "deposit", "chain": "eth", "token": USDC,
            "amount": "12.5", "wallet": DEP, "segregation": "customer", "status": "pending",
            "created_at": "2026-11-27T10:00:00Z", **overrides}


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)))  # type: ignore[arg-type]


async def test_versions_are_kept_and_the_same_record_twice_changes_nothing(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url)
    assert await ingest(settings, engine, [item()], actor="core-feed") == {"created": 1, "updated": 0,
                                                                           "unchanged": 0}
    assert await ingest(settings, engine, [item()], actor="core-feed") == {"created": 0, "updated": 0,
                                                                           "unchanged": 1}
    tx = "0x" + "ab" * 32
    assert (await ingest(settings, engine, [item(status="completed", tx_hash=tx)], actor="core-feed"))["updated"] == 1
    async with engine.connect() as conn:
        versions = await records_repo.versions(conn, "core", "dep-1")
        current = (await records_repo.all_current(conn))[0]
    assert [v["version"] for v in versions] == [1, 2]
    assert current["amount"] == 12_500_000 and current["status"] == "completed" and current["tx_hash"] == tx
    with pytest.raises(RecordsRejected) as info:
        await ingest(settings, engine, [item(amount="13", kind="withdrawal")], actor="core-feed")
    assert info.value.status_code == 409  # a corrected amount is a new version; a changed kind is not
    assert {(e.field, e.index) for e in info.value.errors} == {("kind", 0)}


@pytest.mark.parametrize(("bad", "field", "reason"), [
    ({"amount": "1.0000001"}, "amount", "decimal places"),
    ({"amount": "-1"}, "amount", "non-negative"),
    ({"amount": None, "amount_base_units": str(2**256)}, "amount_base_units", "2**256-1"),
    ({"amount": 12.5}, "amount", "not a JSON number"),
    ({"chain": "polygon"}, "chain", "unknown chain"),
    ({"token": "0x0000000000000000000000000000000000000001"}, "token", "not a registered token"),
    ({"wallet": "0x1234"}, "wallet", "20-byte hex"),
    ({"wallet": DEP[:-1] + ("a" if DEP[-1] != "a" else "b")}, "wallet", ""),
    ({"counterparty": BOB.lower()[:2] + BOB[2:].swapcase()}, "counterparty", "checksum"),
    ({"created_at": "yesterday"}, "created_at", "RFC 3339"),
    ({"created_at": "2026-11-27T10:00:00"}, "created_at", "time zone"),
    ({"kind": "refund"}, "kind", "one of"),
    ({"log_index": 3}, "log_index", "without tx_hash"),
    ({"colour": "red"}, "colour", "unknown field"),
])
async def test_a_bad_item_is_refused_naming_the_field_and_nothing_is_written(
    engine: AsyncEngine, database_url: str, tmp_path: Path, bad: dict, field: str, reason: str
) -> None:
    from app.wallet_book import wallet_book

    settings = _settings(tmp_path, database_url)
    await wallet_book(settings, engine)  # the registry is seeded (and audited) once, before any ingest
    seeded = await _count(engine, AuditEntry.__table__)
    with pytest.raises(RecordsRejected) as info:
        await ingest(settings, engine, [item("ok-1"), item("bad-1", **bad)], actor="core-feed")
    assert any(e.index == 1 and e.field == field and reason in e.reason for e in info.value.errors), info.value.errors
    assert await _count(engine, Record.__table__) == 0 and await _count(engine, AuditEntry.__table__) == seeded


async def test_duplicate_ids_and_oversized_batches_are_refused(engine: AsyncEngine, database_url: str,
                                                              tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    with pytest.raises(RecordsRejected) as dup:
        await ingest(settings, engine, [item("x"), item("x")], actor="a")
    assert (dup.value.errors[0].index, dup.value.errors[0].field) == (1, "external_id")
    with pytest.raises(RecordsRejected) as big:
        await ingest(settings, engine, [item(f"r{i}") for i in range(MAX_BATCH + 1)], actor="a")
    assert big.value.status_code == 413 and big.value.errors[0].field == "records"
    assert await _count(engine, Record.__table__) == 0


async def test_tampering_with_one_audit_row_is_caught(engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    await ingest(settings, engine, [item(f"r{i}") for i in range(5)], actor="core-feed")
    async with engine.connect() as conn:  # 5 records, and the registry's seeding of the wallet
        assert await audit.verify(conn) == (6, None, None)
    async with engine.begin() as conn:
        row_id = (await conn.execute(text("select id from audit_log order by id limit 1 offset 2"))).scalar()
        await conn.execute(text("update audit_log set actor = 'mallory' where id = :id"), {"id": row_id})
    async with engine.connect() as conn:
        checked, bad, why = await audit.verify(conn)
    assert bad == row_id and "edited" in str(why)
    async with engine.begin() as conn:  # restore, then delete one entry instead
        await conn.execute(text("update audit_log set actor = 'core-feed' where id = :id"), {"id": row_id})
        await conn.execute(text("delete from audit_log where id = :id"), {"id": row_id})
    async with engine.connect() as conn:
        _, bad, why = await audit.verify(conn)
    assert bad is not None and bad > row_id and "previous hash" in str(why)
