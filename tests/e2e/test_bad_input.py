"""Bad input on every write endpoint: a 4xx RFC 9457 problem naming the field, and nothing written anywhere
(every table's rows are compared before and after). The wallets endpoints have their own, longer list in
test_wallets_api.py; records' every-field-every-odd-value check is in tests/unit/test_records_validation.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from app.api.main import create_app
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.settings import ApiConfig, Settings
from tests.support.harness import address_for, bearer

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DEP = address_for("bad-dep")
CUSTOMER = address_for("bad-customer")
WHEN = datetime(2026, 11, 26, 9, tzinfo=UTC)
MAX_BODY = 64 * 1024
RECORD = {"source": "core", "external_id": "new-1", "kind": "deposit", "chain": "eth", "token": USDC,
          "amount": "1.5", "wallet": DEP, "segregation": "customer", "status": "pending",
          "created_at": "2026-11-27T09:00:00Z"}
WRONG_CHECKSUM = DEP[:2] + DEP[2:].swapcase()  # same address, every letter's case flipped: a bad checksum

# (the item's change, the field the problem must name)
BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    ({"wallet": "0x1234"}, "items[0].wallet"),
    ({"wallet": WRONG_CHECKSUM}, "items[0].wallet"),
    ({"chain": "polygon"}, "items[0].chain"),
    ({"token": address_for("not-a-token")}, "items[0].token"),
    ({"amount": "-1"}, "items[0].amount"),
    ({"amount": "1.0000001"}, "items[0].amount"),
    ({"amount": None, "amount_base_units": 2**256}, "items[0].amount_base_units"),
    ({"amount": 1.5}, "items[0].amount"),
    ({"kind": 5}, "items[0].kind"),
    ({"created_at": "yesterday"}, "items[0].created_at"),
    ({"wallet": address_for("bad-stranger")}, "items[0].wallet"),  # not one of ours
    ({"wallet": address_for("bad-l2-only")}, "items[0].wallet"),  # ours, but on another chain
    ({"amount": "\u00b2"}, "items[0].amount"),  # int() and isdigit() take Unicode digits; amounts do not
    ({"amount": "\u0661\u0662.\u0665"}, "items[0].amount"),
    ({"amount": None, "amount_base_units": "\u00b2"}, "items[0].amount_base_units"),
    ({"amount": None, "amount_base_units": "\u0661\u0662"}, "items[0].amount_base_units"),
]


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, api=ApiConfig(max_body_bytes=MAX_BODY),
                    chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]},
                            {"name": "l2", "chain_id": 10, "rpc_urls": ["http://127.0.0.1:1"]}],
                    tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
                    wallets=[{"address": DEP, "label": "d", "kind": "deposit", "segregation": "customer"},
                             {"chain": "l2", "address": address_for("bad-l2-only"), "label": "l2", "kind": "hot",
                              "segregation": "house"}])  # type: ignore[list-item]


async def _everything(engine: AsyncEngine) -> dict[str, list[tuple]]:
    """Every row of every table, to compare before and after."""
    async with engine.connect() as conn:
        return {name: sorted(map(tuple, await conn.execute(select(table))), key=repr)
                for name, table in SQLModel.metadata.tables.items()}


def _item(change: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in {**RECORD, **change}.items() if v is not None}


async def test_every_write_endpoint_refuses_bad_input_by_field_and_writes_nothing(
        engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    transfer = {"id": 1, "chain_id": 1, "token": USDC, "sender": CUSTOMER, "recipient": DEP, "amount": 5_000_000,
                "tx_hash": f"0x{1:064x}", "log_index": 0, "block_number": 1, "block_hash": f"0x{1:064x}",
                "block_time": WHEN, "state": "finalized", "seen_at": WHEN, "confirmed_at": WHEN,
                "finalized_at": WHEN}
    record = {"source": "core", "external_id": "late", "version": 1, "kind": "deposit", "chain_id": 1,
              "token": USDC, "amount": 4_000_000, "wallet": DEP, "counterparty": None, "tx_hash": None,
              "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
              "created_at": WHEN + timedelta(days=2), "expected_by": None, "ingested_at": WHEN}
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [transfer])
        await conn.execute(Record.__table__.insert(), [record])
    await reconcile_once(settings, engine, now=WHEN + timedelta(days=4))
    app = create_app(settings, engine=engine)
    headers = await bearer(engine, "ops", "ingest", "approver", "admin")
    late = [{"source": "core", "external_id": "late"}]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=headers) as client:
        breaks = (await client.get("/v1/breaks")).json()["items"]
        open_id = next(b["id"] for b in breaks if b["transfer_ids"] == [1])
        wallet_id = (await client.get("/v1/wallets")).json()["items"][0]["id"]
        before = await _everything(engine)
        cases: list[tuple[str, str, Any, str, set[int]]] = [
            *[("POST", "/v1/records", [_item(change)], field, {400, 422}) for change, field in BAD_RECORDS],
            ("POST", "/v1/records", [RECORD, RECORD], "items[1].external_id", {422}),  # a duplicate id
            ("POST", "/v1/records", {"items": RECORD}, "body", {422}),  # not a list
            ("POST", "/v1/matches", {"transfer_ids": [], "record_keys": late}, "transfer_ids", {422}),
            ("POST", "/v1/matches", {"transfer_ids": ["one"], "record_keys": late}, "transfer_ids.0", {422}),
            ("POST", "/v1/matches", {"transfer_ids": [1, 1], "record_keys": late}, "transfer_ids", {400}),
            ("POST", "/v1/matches", {"transfer_ids": [999], "record_keys": late}, "transfer_ids", {400}),
            ("POST", "/v1/matches", {"transfer_ids": [1], "record_keys": late}, "record_keys", {400}),  # 5 != 4
            ("POST", "/v1/matches", {"transfer_ids": [1], "record_keys": late, "break_id": -1}, "break_id", {422}),
            ("POST", f"/v1/breaks/{open_id}/resolve", {"reason": "lost", "note": "n"}, "reason", {422}),
            ("POST", f"/v1/breaks/{open_id}/resolve", {"reason": "spam", "note": ""}, "note", {422}),
            ("POST", f"/v1/breaks/{open_id}/resolve", {"reason": "spam", "note": 5}, "note", {422}),
            ("POST", f"/v1/breaks/{open_id}/reopen", {"reason": ""}, "reason", {422}),
            ("DELETE", "/v1/matches/1", None, "reason", {422}),
            ("POST", "/v1/wallets", {"chain": "eth", "address": WRONG_CHECKSUM, "label": "x", "kind": "hot",
                                     "segregation": "house"}, "address", {400, 422}),
            ("PATCH", f"/v1/wallets/{wallet_id}", {"kind": "bogus"}, "kind", {422}),
        ]
        oversized = "x" * (MAX_BODY + 1)
        cases += [(method, path, {"padding": oversized}, "body", {413}) for method, path in (
            ("POST", "/v1/records"), ("POST", "/v1/matches"), ("POST", f"/v1/breaks/{open_id}/resolve"),
            ("POST", f"/v1/breaks/{open_id}/reopen"), ("POST", "/v1/wallets"), ("PATCH", f"/v1/wallets/{wallet_id}"))]
        wrong: list[str] = []
        for method, path, body, field, statuses in cases:
            reply = await client.request(method, path, json=body)
            named = [e.get("field") for e in reply.json().get("errors", [])] if reply.content else []
            if (reply.status_code not in statuses or reply.headers["content-type"] != "application/problem+json"
                    or field not in named):
                wrong.append(f"{method} {path} {str(body)[:80]}: {reply.status_code} {reply.text[:200]}")
    assert not wrong, "\n".join(wrong)
    assert await _everything(engine) == before
