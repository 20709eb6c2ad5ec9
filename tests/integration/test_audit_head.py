"""The audit log's head, kept outside the log: deleting the last entries, writing around the log, or truncating
the log and its head together (against a head anchored elsewhere) fail `verify`, naming the missing range."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.persistence import audit
from app.settings import Settings
from tests.support.harness import bearer


async def _write(engine: AsyncEngine, singles: int, batch: int = 0) -> list[str]:
    """`singles` entries one by one, then `batch` in one append_many: the hashes in order."""
    hashes = []
    for i in range(singles):
        async with engine.begin() as conn:
            hashes.append(await audit.append(conn, actor="t", action="test.single", entity=f"x:{i}", after={"i": i}))
    if batch:
        async with engine.begin() as conn:
            await audit.append_many(conn, [{"actor": "t", "action": "test.batch", "entity": f"y:{i}", "after": {"i": i}}
                                           for i in range(batch)])
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT hash FROM audit_log ORDER BY id"))).scalars())


async def _verify(engine: AsyncEngine, anchor: audit.Head | None = None) -> tuple[int, int | None, str | None]:
    async with engine.connect() as conn:
        return await (audit.verify(conn, anchor=anchor) if anchor else audit.verify(conn))


async def _head(engine: AsyncEngine) -> audit.Head:
    async with engine.connect() as conn:
        head = await audit.read_head(conn)
    assert head is not None
    return head


async def _ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT id FROM audit_log ORDER BY id"))).scalars())


async def test_the_head_moves_with_every_single_and_batched_append(engine: AsyncEngine) -> None:
    assert await _head(engine) == audit.Head(0, audit.GENESIS)  # the migration starts it at the genesis hash
    hashes = await _write(engine, 3)
    head = await _head(engine)
    assert (head.seq, head.hash, head.entry_id) == (3, hashes[-1], (await _ids(engine))[-1])
    hashes = await _write(engine, 0, batch=4)
    head = await _head(engine)
    assert (head.seq, head.hash, head.entry_id) == (7, hashes[-1], (await _ids(engine))[-1])
    assert head.at is not None
    assert await _verify(engine) == (7, None, None)


@pytest.mark.parametrize(("deleted", "batch"), [(1, 0), (3, 0), (2, 5), (7, 5)])
async def test_deleting_the_last_entries_fails_verify_naming_the_missing_range(
    engine: AsyncEngine, deleted: int, batch: int
) -> None:
    await _write(engine, 7 - batch, batch=batch)
    ids = await _ids(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id > :keep"),
                           {"keep": ids[-deleted - 1] if deleted < len(ids) else 0})
    checked, bad, why = await _verify(engine)
    assert checked == 7 - deleted and bad is not None
    assert f"entries {8 - deleted}..7" in str(why) and f"up to id {ids[-1]}" in str(why)


async def test_truncating_the_log_and_its_head_is_caught_against_an_external_anchor(engine: AsyncEngine) -> None:
    await _write(engine, 4)
    anchored = await _head(engine)
    async with engine.begin() as conn:  # everything, and the head set back to the genesis: internally consistent
        await conn.execute(text("DELETE FROM audit_log"))
        await conn.execute(text("UPDATE audit_head SET seq = 0, hash = :g, entry_id = NULL, at = NULL"),
                           {"g": audit.GENESIS})
    assert await _verify(engine) == (0, None, None)  # what the database alone can say
    checked, bad, why = await _verify(engine, anchor=audit.Head(anchored.seq, anchored.hash))
    assert (checked, bad) == (0, 1) and "entries 1..4 are missing" in str(why) and "anchored head" in str(why)
    async with engine.begin() as conn:  # and with the head row gone too
        await conn.execute(text("DELETE FROM audit_head"))
    assert "entries 1..4 are missing" in str((await _verify(engine, anchor=anchored))[2])
    assert "audit head" in str((await _verify(engine))[2]) and (await _verify(engine))[1] is not None


async def test_cutting_the_tail_and_moving_the_head_back_is_caught_against_an_older_anchor(
    engine: AsyncEngine
) -> None:
    hashes = await _write(engine, 6)
    anchored = await _head(engine)
    ids = await _ids(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id > :id"), {"id": ids[2]})
        await conn.execute(text("UPDATE audit_head SET seq = 3, hash = :h, entry_id = :id"),
                           {"h": hashes[2], "id": ids[2]})
    assert await _verify(engine) == (3, None, None)
    _, bad, why = await _verify(engine, anchor=anchored)
    assert bad == ids[2] + 1 and f"entries 4..6 are missing (after id {ids[2]}, up to id {ids[-1]})" in str(why)


async def test_an_anchor_taken_earlier_still_holds_after_more_appends(engine: AsyncEngine) -> None:
    await _write(engine, 3)
    anchored = await _head(engine)
    await _write(engine, 2, batch=3)
    assert await _verify(engine, anchor=anchored) == (8, None, None)
    wrong = audit.Head(anchored.seq, "ab" * 32)
    _, bad, why = await _verify(engine, anchor=wrong)
    assert bad == (await _ids(engine))[2] and "entry 3" in str(why) and "replaced" in str(why)


async def test_entries_written_around_the_log_or_after_a_cut_tail_fail(engine: AsyncEngine) -> None:
    hashes = await _write(engine, 3)
    forged = audit.entry_hash(hashes[-1], (await _head(engine)).at, "mallory", "x", "y:1", None, None)  # type: ignore[arg-type]
    async with engine.begin() as conn:  # a correctly chained entry, inserted without moving the head
        await conn.execute(text("INSERT INTO audit_log (at, actor, action, entity, prev_hash, hash) SELECT at, "
                                "'mallory', 'x', 'y:1', :p, :h FROM audit_head"), {"p": hashes[-1], "h": forged})
    _, bad, why = await _verify(engine)
    assert bad == (await _ids(engine))[-1] and "entries 4..4" in str(why) and "not in the head" in str(why)
    async with engine.begin() as conn:  # remove it and the last true entry; the next append chains onto the head
        await conn.execute(text("DELETE FROM audit_log WHERE id >= :id"), {"id": (await _ids(engine))[2]})
    await _write(engine, 1)
    _, bad, why = await _verify(engine)
    assert bad == (await _ids(engine))[-1] and "previous hash does not match" in str(why)


async def test_two_writers_at_once_chain_one_after_the_other_and_the_head_follows(
    engine: AsyncEngine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("two concurrent writing connections: PostgreSQL (SQLite has one writer)")

    async def writer(name: str) -> None:
        for i in range(15):
            async with engine.begin() as conn:
                if i % 3:
                    await audit.append(conn, actor=name, action="test", entity=f"{name}:{i}")
                else:
                    await audit.append_many(conn, [{"actor": name, "action": "test", "entity": f"{name}:{i}:{j}"}
                                                   for j in range(3)])
                await asyncio.sleep(0)

    await asyncio.gather(writer("a"), writer("b"))
    assert await _verify(engine) == (2 * (10 + 5 * 3), None, None)
    assert (await _head(engine)).seq == 50


def test_the_head_signature_is_hmac_sha256_of_seq_and_hash_and_a_tampered_head_fails() -> None:
    head = audit.Head(42, "0f" * 32)
    key = "correct horse battery staple"
    signature = audit.sign_head(head, key)
    if shutil.which("openssl"):  # an independent implementation
        out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", key], input=f"42:{'0f' * 32}",
                             capture_output=True, text=True, check=True).stdout
        assert out.strip().split()[-1] == signature
    parsed, sig = audit.parse_anchor(f"42:{'0F' * 32}:{signature.upper()}")
    assert parsed == head and sig == signature and audit.signature_holds(parsed, sig, key)
    for tampered in (audit.Head(41, head.hash), audit.Head(43, head.hash), audit.Head(42, "0e" + "0f" * 31)):
        assert not audit.signature_holds(tampered, signature, key)
    assert not audit.signature_holds(head, signature, key + "x")
    for bad in ("42", "42:abc", f"-1:{'0f' * 32}", f"42:{'0f' * 32}:zz", f"x:{'0f' * 32}"):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            audit.parse_anchor(bad)


async def test_the_api_verification_reports_a_cut_tail(engine: AsyncEngine, database_url: str,
                                                       tmp_path: Path) -> None:
    await _write(engine, 5)
    admin = await bearer(engine, "admin", name="auditor")  # creating a key is audited too: entry 6
    ids = await _ids(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_log WHERE id > :id"), {"id": ids[3]})
    app = create_app(Settings(database_url=database_url, data_dir=tmp_path), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        got = (await client.get("/v1/audit/verify", headers=admin)).json()
    assert got["intact"] is False and got["entries"] == 4 and "entries 5..6" in got["reason"]


def test_upgrading_a_database_with_an_audit_log_starts_the_head_at_its_last_entry(database_url: str) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import create_engine

    from app.persistence.db import sync_url
    from app.persistence.migrate import upgrade

    if database_url.startswith("postgresql"):
        with create_engine(sync_url(database_url)).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        database_url = database_url.replace("settle.db", "before-head.db")
    upgrade(database_url, "42082c8c2646")
    engine = create_engine(sync_url(database_url))
    prev, when = audit.GENESIS, datetime(2026, 11, 30, 10, tzinfo=UTC)
    with engine.begin() as conn:
        for i in range(3):
            digest = audit.entry_hash(prev, when, "t", "old", f"x:{i}", None, None)
            conn.execute(text("INSERT INTO audit_log (at, actor, action, entity, prev_hash, hash) VALUES "
                              "(:at, 't', 'old', :e, :p, :h)"), {"at": when, "e": f"x:{i}", "p": prev, "h": digest})
            prev = digest
    upgrade(database_url)
    with engine.connect() as conn:
        head = conn.execute(text("SELECT seq, hash, entry_id FROM audit_head")).all()
        last_id = conn.execute(text("SELECT max(id) FROM audit_log")).scalar()
    engine.dispose()
    assert [tuple(r) for r in head] == [(3, prev, last_id)]
