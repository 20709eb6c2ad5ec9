"""/v1/wallets: config wallets seeded into the registry, registering and changing wallets (audited with the key's
name), the registry winning over the configuration on restart, and bad input refused naming the field with
nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.settings import Settings
from tests.support.harness import address_for, bearer

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DEP = address_for("wallets-dep")
NEW = address_for("wallets-new")


def _settings(tmp_path: Path, url: str, label: str = "d") -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"], "request_timeout": 1}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
        wallets=[{"address": DEP, "label": label, "kind": "deposit", "segregation": "customer"}])  # type: ignore[list-item]


def _client(settings: Settings, engine: AsyncEngine) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, engine=engine)),
                             base_url="http://test")


async def _table(engine: AsyncEngine, name: str) -> list[tuple]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(f"SELECT * FROM {name} ORDER BY id"))]


async def _audit(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    return [(r[2], r[3], r[4]) for r in await _table(engine, "audit_log") if r[4].startswith("wallet:")]


async def test_config_wallets_are_seeded_then_wallets_are_registered_changed_and_audited(
        engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    admin, treasury = await bearer(engine, "admin", name="admin-alice"), await bearer(engine, "treasury")
    async with _client(_settings(tmp_path, database_url), engine) as client:
        seeded = (await client.get("/v1/wallets", headers=treasury)).json()["items"]
        created = await client.post("/v1/wallets", headers=admin, json={
            "chain": "eth", "address": NEW.lower(), "label": "late deposit", "kind": "deposit",
            "segregation": "customer", "start_block": 1234})
        changed = await client.patch(f"/v1/wallets/{created.json()['id']}", headers=admin,
                                     json={"label": "retired deposit", "active": False})
        same = await client.patch(f"/v1/wallets/{created.json()['id']}", headers=admin, json={"active": False})
        relabelled = await client.patch(f"/v1/wallets/{seeded[0]['id']}", headers=admin,
                                        json={"label": "renamed", "segregation": "house"})
        inactive = (await client.get("/v1/wallets", headers=admin, params={"active": "false"})).json()["items"]
        unknown = await client.patch("/v1/wallets/999", headers=admin, json={"label": "x"})
        no_status = await client.get("/v1/wallets/999/status", headers=treasury)
        status = await client.get(f"/v1/wallets/{seeded[0]['id']}/status", headers=treasury)
    assert [(w["chain"], w["address"], w["label"], w["kind"], w["segregation"], w["start_block"], w["active"],
             w["source"], w["created_by"]) for w in seeded] == [
        ("eth", DEP, "d", "deposit", "customer", None, True, "config", "config")]
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["chain_id"], body["address"], body["label"], body["start_block"], body["active"], body["source"],
            body["created_by"]) == (1, NEW, "late deposit", 1234, True, "api", "admin-alice")
    assert changed.status_code == 200 and (changed.json()["label"], changed.json()["active"]) == (
        "retired deposit", False)
    assert changed.json()["updated_at"] > body["updated_at"] and same.json() == changed.json()
    assert relabelled.json()["label"] == "renamed" and relabelled.json()["segregation"] == "house"
    assert [w["address"] for w in inactive] == [NEW]
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert no_status.status_code == 404
    assert status.status_code == 200 and status.json()["gas"]["amount"] is None  # the RPC is down: no 5xx
    assert status.json()["gas"]["error"]
    new_id, dep_id = body["id"], seeded[0]["id"]
    assert await _audit(engine) == [("config", "wallet.registered", f"wallet:{dep_id}"),
                                    ("admin-alice", "wallet.registered", f"wallet:{new_id}"),
                                    ("admin-alice", "wallet.changed", f"wallet:{new_id}"),
                                    ("admin-alice", "wallet.changed", f"wallet:{dep_id}")]
    async with engine.connect() as conn:
        before, after = (await conn.execute(text(
            "SELECT before, after FROM audit_log WHERE action = 'wallet.changed' ORDER BY id LIMIT 1"))).one()
    assert '"label":"late deposit"' in before and '"active":true' in before
    assert '"label":"retired deposit"' in after and '"active":false' in after
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar() > 0

    # A restart with a changed file: the registry keeps what the API set; nothing is seeded twice.
    async with _client(_settings(tmp_path, database_url, label="from the file"), engine) as client:
        again = (await client.get("/v1/wallets", headers=treasury)).json()["items"]
        first = (await client.get("/v1/wallets", headers=treasury, params={"limit": 1})).json()
        second = (await client.get("/v1/wallets", headers=treasury,
                                   params={"limit": 1, "after": first["next_after"]})).json()
    assert [w["id"] for w in first["items"] + second["items"]] == [dep_id, new_id]
    assert first["next_after"] == dep_id and second["next_after"] is None  # one page each, then the end
    assert [(w["id"], w["label"], w["segregation"]) for w in again] == [(dep_id, "renamed", "house"),
                                                                        (new_id, "retired deposit", "customer")]
    assert len(await _audit(engine)) == 4


BAD_POSTS: list[tuple[dict[str, Any], int, str]] = [
    ({"address": "0x1234"}, 422, "address"),
    ({"address": NEW.swapcase().replace("0X", "0x")}, 400, "address"),  # mixed case, wrong checksum
    ({"chain": "polygon"}, 400, "chain"),
    ({"kind": "piggybank"}, 422, "kind"),
    ({"segregation": "both"}, 422, "segregation"),
    ({"start_block": -1}, 422, "start_block"),
    ({"start_block": "5"}, 422, "start_block"),
    ({"start_block": 1.5}, 422, "start_block"),
    ({"label": 5}, 422, "label"),
    ({"label": ""}, 422, "label"),
    ({"chain": 1}, 422, "chain"),
    ({"colour": "red"}, 422, "colour"),
    ({"address": DEP.lower()}, 409, ""),  # the config wallet, already registered
]
BAD_PATCHES: list[tuple[dict[str, Any], int, str]] = [
    ({"active": "no"}, 422, "active"),
    ({"active": 0}, 422, "active"),
    ({"label": ""}, 422, "label"),
    ({"label": 7}, 422, "label"),
    ({"kind": None}, 422, "kind"),
    ({"kind": "Deposit"}, 422, "kind"),
    ({"segregation": "nobody"}, 422, "segregation"),
    ({"start_block": 5}, 422, "start_block"),  # not changeable
    ({"owner": "x"}, 422, "owner"),
    ({}, 400, "body"),
]


async def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
        engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    admin = await bearer(engine, "admin")
    good = {"chain": "eth", "address": NEW, "label": "n", "kind": "hot", "segregation": "house", "start_block": 1}
    async with _client(_settings(tmp_path, database_url), engine) as client:
        dep_id = (await client.get("/v1/wallets", headers=admin)).json()["items"][0]["id"]
        wallets, audit = await _table(engine, "wallets"), await _table(engine, "audit_log")
        for change, status, field in BAD_POSTS:
            reply = await client.post("/v1/wallets", headers=admin, json={**good, **change})
            assert reply.status_code == status, (change, reply.text)
            assert reply.headers["content-type"] == "application/problem+json"
            if field:
                assert [e["field"] for e in reply.json()["errors"]] == [field], (change, reply.text)
        for fields in ("label", "kind", "segregation", "address", "chain"):
            reply = await client.post("/v1/wallets", headers=admin, json={k: v for k, v in good.items() if k != fields})
            assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == fields
        not_an_object = await client.post("/v1/wallets", headers=admin, json=[good])
        for change, status, field in BAD_PATCHES:
            reply = await client.patch(f"/v1/wallets/{dep_id}", headers=admin, json=change)
            assert reply.status_code == status, (change, reply.text)
            assert [e["field"] for e in reply.json()["errors"]] == [field], (change, reply.text)
        bad_id = await client.patch("/v1/wallets/0", headers=admin, json={"label": "x"})
    assert not_an_object.status_code == 422
    assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "wallet_id"
    assert await _table(engine, "wallets") == wallets and await _table(engine, "audit_log") == audit
