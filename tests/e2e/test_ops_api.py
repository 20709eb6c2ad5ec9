"""The ops API on a reconciled database: the break queue, a manual match that resolves a break, a write-off
that needs a second person, an unmatch, and the audit log naming every key."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.persistence import recon_repo
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from tests.support.harness import address_for, bearer
from tests.support.recon_rows import WHEN, ReconRows

DEP = address_for("ops-dep")
CUSTOMER = address_for("ops-customer")


ROWS = ReconRows(DEP, CUSTOMER)
_settings, _transfer, _record = ROWS.settings, ROWS.transfer, ROWS.record


async def test_ops_work_the_queue_through_the_api(engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    async with engine.begin() as conn:  # a deposit recorded 2 days late (outside the window), and a stray one
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000), _transfer(2, 70_000)])
        await conn.execute(Record.__table__.insert(), [_record("late-1", 5_000_000, WHEN + timedelta(days=2))])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=4))
    app = create_app(settings, engine=engine)
    alice, bob = await bearer(engine, "ops", name="alice"), await bearer(engine, "ops", "approver", name="bob")
    admin = await bearer(engine, "admin", name="auditor")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        queue = (await client.get("/v1/breaks", params={"status": "open"}, headers=alice)).json()["items"]
        kinds = {(b["type"], tuple(b["transfer_ids"]), tuple(k["external_id"] for k in b["record_keys"])): b
                 for b in queue}
        assert set(kinds) == {("unmatched_transfer", (1,), ()), ("unmatched_transfer", (2,), ()),
                              ("missing_transfer", (), ("late-1",))}
        stray = kinds[("unmatched_transfer", (2,), ())]
        assert stray["amount"] == "0.07" and stray["amount_base_units"] == "70000" and stray["age_seconds"] > 0
        older = (await client.get("/v1/breaks", params={"older_than": 24 * 100}, headers=alice)).json()["items"]
        assert older == []

        missing = (await client.get(f"/v1/breaks/{kinds[('missing_transfer', (), ('late-1',))]['id']}",
                                    headers=alice)).json()
        suggested = missing["records"][0]["candidates"]  # closest amount first
        assert [(c["id"], c["amount_difference_base_units"]) for c in suggested] == [(1, "0"), (2, "-4930000")]
        stray_detail = (await client.get(f"/v1/breaks/{stray['id']}", headers=alice)).json()
        assert [c["external_id"] for c in stray_detail["transfers"][0]["candidates"]] == ["late-1"]
        # the break's items read as everywhere else: the transfer as /v1/transfers/{id}, the record as /v1/records
        item = stray_detail["transfers"][0]
        assert {k: v for k, v in item.items() if k != "candidates"} == (await client.get(
            "/v1/transfers/2", headers=alice)).json()
        assert item["token"]["symbol"] == "USDC" and item["amount"] == "0.07" and item["recon_status"] == "unmatched"
        assert missing["records"][0]["amount"] == "5" and missing["records"][0]["amount_base_units"] == "5000000"

        unmatched = kinds[("unmatched_transfer", (1,), ())]
        made = await client.post("/v1/matches", headers=alice, json={
            "transfer_ids": [1], "record_keys": [{"source": "core", "external_id": "late-1"}],
            "break_id": unmatched["id"]})
        assert made.status_code == 201, made.text
        detail = (await client.get(f"/v1/breaks/{unmatched['id']}", headers=bob)).json()
        assert detail["status"] == "resolved" and detail["resolution"]["by"] == "alice"
        assert [(h["action"], h["actor"]) for h in detail["history"]] == [("opened", "reconciler"),
                                                                          ("matched", "alice")]
        assert detail["transfers"][0]["amount_base_units"] == "5000000"
        again = await client.post("/v1/matches", headers=alice, json={
            "transfer_ids": [1], "record_keys": [{"source": "core", "external_id": "late-1"}]})
        assert again.status_code == 409

        written_off = await client.post(f"/v1/breaks/{stray['id']}/resolve", headers=bob,
                                        json={"reason": "write_off", "note": "dust from an unknown sender"})
        assert written_off.json() == {"id": stray["id"], "status": "awaiting_approval"}
        assert (await client.post(f"/v1/breaks/{stray['id']}/approve", headers=bob)).status_code == 403  # own
        assert (await client.post(f"/v1/breaks/{stray['id']}/approve", headers=alice)).status_code == 403  # scope
        carol = await bearer(engine, "approver", name="carol")
        approved = await client.post(f"/v1/breaks/{stray['id']}/approve", headers=carol)
        assert approved.json() == {"id": stray["id"], "status": "resolved"}
        bad = await client.post(f"/v1/breaks/{stray['id']}/resolve", headers=bob, json={"reason": "lost", "note": ""})
        assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} == {"reason", "note"}

        async with engine.connect() as conn:
            match_id = next(m["id"] for m in await recon_repo.active_matches(conn) if m["created_by"] == "alice")
        no_reason = await client.delete(f"/v1/matches/{match_id}", headers=alice)
        assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
        removed = await client.delete(f"/v1/matches/{match_id}", params={"reason": "wrong customer"}, headers=alice)
        assert removed.json() == {"id": match_id, "removed": True}
        assert (await client.delete(f"/v1/matches/{match_id}", params={"reason": "x"}, headers=alice)).status_code \
            == 404

        log = (await client.get("/v1/audit", params={"limit": 1000}, headers=admin)).json()["items"]
        actors = {(e["action"], e["actor"]) for e in log}
        assert {("match.created", "alice"), ("break.resolution", "bob"), ("break.approved", "carol"),
                ("match.removed", "alice")} <= actors
        verdict = (await client.get("/v1/audit/verify", headers=admin)).text.splitlines()[-1]  # NDJSON: last line
        assert json.loads(verdict)["intact"] is True
        assert (await client.get("/v1/audit", headers=alice)).status_code == 403


async def test_the_unmatched_queue_is_oldest_first_with_suggested_records(engine: AsyncEngine, database_url: str,
                                                                         tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    transfers = [_transfer(i, amount) for i, amount in ((10, 1_000_000), (11, 2_000_000), (12, 3_000_000))]
    for i, t in enumerate(transfers):
        t["block_time"] = WHEN + timedelta(hours=i)
    async with engine.begin() as conn:  # records far outside the window: not matched, but worth suggesting
        await conn.execute(Transfer.__table__.insert(), transfers)
        await conn.execute(Record.__table__.insert(), [
            _record("near", 2_000_100, WHEN + timedelta(days=3)), _record("far", 9_000_000, WHEN + timedelta(days=3)),
            {**_record("void", 2_000_000, WHEN + timedelta(days=3)), "status": "cancelled"}])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=4))
    app = create_app(settings, engine=engine)
    ops = await bearer(engine, "ops")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=ops) as client:
        first = (await client.get("/v1/transfers/unmatched", params={"limit": 2})).json()
        rest = (await client.get("/v1/transfers/unmatched", params={"cursor": first["next_cursor"]})).json()
        one = (await client.get("/v1/transfers/11")).json()
        missing = await client.get("/v1/transfers/999")
        bad = await client.get("/v1/transfers/unmatched", params={"cursor": "bm9wZQ"})
    queue = first["items"] + rest["items"]
    assert [q["transfer"]["id"] for q in queue] == [10, 11, 12] and rest["next_cursor"] is None
    assert queue[0]["age_seconds"] > queue[1]["age_seconds"] > queue[2]["age_seconds"]
    second = queue[1]["candidates"]
    assert [(c["external_id"], c["amount_difference_base_units"]) for c in second] == [("near", "100"),
                                                                                      ("far", "7000000")]
    assert one["amount_base_units"] == "2000000" and one["amount"] == "2"
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert bad.status_code == 400 and bad.json()["errors"] == [{"field": "cursor",
                                                                "reason": "not a cursor returned by this endpoint"}]


async def test_transfers_filter_by_recon_status_direction_and_block_time(engine: AsyncEngine, database_url: str,
                                                                        tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    matched, stray, zero = _transfer(10, 1_000_000), _transfer(11, 70_000), _transfer(12, 0)
    stray["block_time"], zero["block_time"] = WHEN + timedelta(hours=1), WHEN + timedelta(hours=2)
    zero["sender"], zero["recipient"] = DEP, CUSTOMER  # an outgoing zero-value transfer: not noise, unmatched
    bait = _transfer(14, 0)  # an incoming zero-value transfer from outside: noise, explained
    bait["block_time"] = WHEN + timedelta(hours=4)
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [matched, stray, zero, bait])
        await conn.execute(Record.__table__.insert(), [_record("dep-10", 1_000_000, WHEN)])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=4))
    late = _transfer(13, 5)  # indexed after the pass: not decided yet
    late["block_time"] = WHEN + timedelta(hours=3)
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [late])
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "treasury")) as client:
        async def ids(**query: str) -> list[int]:
            reply = await client.get("/v1/transfers", params=query)
            assert reply.status_code == 200, reply.text
            return [t["id"] for t in reply.json()["items"]]

        by_status = {s: await ids(recon_status=s) for s in ("matched", "explained", "unmatched", "pending")}
        listed = {t["id"]: t["recon_status"] for t in (await client.get("/v1/transfers")).json()["items"]}
        one = (await client.get("/v1/transfers/11")).json()
        directions = {d: await ids(direction=d) for d in ("in", "out", "internal")}
        from_dep = await ids(direction="out", wallet=DEP)
        window = await ids(since=(WHEN + timedelta(hours=1)).isoformat(), until=(WHEN + timedelta(hours=3)).isoformat())
        naive = await client.get("/v1/transfers", params={"since": "2026-11-26T10:00:00"})
        unknown = await client.get("/v1/transfers", params={"recon_status": "lost"})
    assert by_status == {"matched": [10], "explained": [14], "unmatched": [11, 12], "pending": [13]}
    assert listed == {10: "matched", 11: "unmatched", 12: "unmatched", 13: "pending", 14: "explained"}
    assert one["recon_status"] == "unmatched"
    assert directions == {"in": [10, 11, 13, 14], "out": [12], "internal": []} and from_dep == [12]
    assert window == [11, 12]
    assert naive.status_code == 400 and naive.json()["errors"][0]["field"] == "since"
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "recon_status"


async def test_a_manual_match_naming_an_item_twice_is_refused_and_nothing_is_written(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url)
    async with engine.begin() as conn:  # 2 x 5 USDC would sum to the record's 10 if the duplicate were counted
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000)])
        await conn.execute(Record.__table__.insert(), [_record("r-10", 10_000_000, WHEN)])
    app = create_app(settings, engine=engine)
    key = {"source": "core", "external_id": "r-10"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "ops")) as client:
        twice = await client.post("/v1/matches", json={"transfer_ids": [1, 1], "record_keys": [key]})
        keys_twice = await client.post("/v1/matches", json={"transfer_ids": [1], "record_keys": [key, key]})
    assert twice.status_code == 400 and twice.json()["errors"] == [{"field": "transfer_ids",
                                                                    "reason": "an item appears twice"}]
    assert keys_twice.status_code == 400 and keys_twice.json()["errors"][0]["field"] == "record_keys"
    async with engine.connect() as conn:
        assert await recon_repo.active_matches(conn) == []


async def test_a_manual_match_resolves_only_an_open_break_that_names_its_items(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url)
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000), _transfer(2, 70_000)])
        await conn.execute(Record.__table__.insert(), [_record("late-1", 5_000_000, WHEN + timedelta(days=2))])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=4))
    app = create_app(settings, engine=engine)
    pair = {"transfer_ids": [1], "record_keys": [{"source": "core", "external_id": "late-1"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "ops")) as client:
        breaks = {tuple(b["transfer_ids"]): b["id"] for b in (await client.get("/v1/breaks")).json()["items"]}
        unrelated = await client.post("/v1/matches", json={**pair, "break_id": breaks[(2,)]})
        missing = await client.post("/v1/matches", json={**pair, "break_id": 999})
        spam = await client.post(f"/v1/breaks/{breaks[(2,)]}/resolve", json={"reason": "spam", "note": "dust"})
        closed = await client.post("/v1/matches", json={**pair, "break_id": breaks[(2,)]})
        async with engine.connect() as conn:
            assert await recon_repo.active_matches(conn) == []  # nothing written by the refused ones
        made = await client.post("/v1/matches", json={**pair, "break_id": breaks[(1,)]})
    assert unrelated.status_code == 400 and unrelated.json()["errors"][0]["field"] == "break_id"
    assert missing.status_code == 404 and spam.status_code == 200
    assert closed.status_code == 409
    assert made.status_code == 201, made.text
