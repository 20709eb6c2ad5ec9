"""Schemathesis against the app's own OpenAPI document: generated requests (a bounded number per operation) to
every endpoint with a key holding every scope, on a reconciled SQLite database. No 5xx, and every response
matches the schema the document declares (status codes, content types, bodies).

One check is off: "schema-valid data must be accepted". A value can be well-formed and still wrong (an unknown
chain name, an address with a bad checksum, a cursor this API never issued), and the answer is a 400 problem
naming the field, which the document declares."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.pool import NullPool

from app.access import Scope, create_key
from app.api.main import create_app
from app.persistence.db import make_engine
from app.persistence.migrate import upgrade
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.settings import Settings
from tests.support.harness import address_for

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DEP = address_for("st-dep")
WHEN = datetime(2026, 11, 26, 9, tzinfo=UTC)
KEY: dict[str, str] = {}
ONE_SCOPE: dict[Scope, dict[str, str]] = {}


async def _seed(s: Settings) -> str:
    engine = make_engine(s.database_url, poolclass=NullPool)
    try:
        rows = [{"id": i, "chain_id": 1, "token": USDC, "sender": address_for(f"st-c{i}"), "recipient": DEP,
                 "amount": 1_000_000 * i, "tx_hash": f"0x{i:064x}", "log_index": 0, "block_number": i,
                 "block_hash": f"0x{i:064x}", "block_time": WHEN, "state": "finalized", "seen_at": WHEN,
                 "confirmed_at": WHEN, "finalized_at": WHEN} for i in range(1, 6)]
        records = [{"source": "core", "external_id": f"r{i}", "version": 1, "kind": "deposit", "chain_id": 1,
                    "token": USDC, "amount": 1_000_000 * i, "wallet": DEP, "counterparty": None, "tx_hash": None,
                    "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
                    "created_at": WHEN + timedelta(hours=i * 3), "expected_by": None, "ingested_at": WHEN}
                   for i in range(1, 6)]
        async with engine.begin() as conn:
            await conn.execute(Transfer.__table__.insert(), rows)
            await conn.execute(Record.__table__.insert(), records)
        await reconcile_once(s, engine, now=WHEN + timedelta(days=2))
        for scope in Scope:
            key = await create_key(engine, name=f"fuzzer-{scope.value}", scopes=[scope], actor="test")
            ONE_SCOPE[scope] = {"Authorization": f"Bearer {key}"}
        return await create_key(engine, name="fuzzer", scopes=list(Scope), actor="test")
    finally:
        await engine.dispose()


def _schema(tmp: Path) -> object:
    s = Settings(database_url=f"sqlite+aiosqlite:///{tmp}/settle.db", data_dir=tmp, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
        wallets=[{"address": DEP, "label": "d", "kind": "deposit", "segregation": "customer"}])  # type: ignore[list-item]
    upgrade(s.database_url)
    KEY["Authorization"] = f"Bearer {asyncio.run(_seed(s))}"
    # each generated call may run on its own event loop: no pooled connections across loops
    app = create_app(s, engine=make_engine(s.database_url, poolclass=NullPool))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _failures(schema: object, headers: dict[str, str], examples: int) -> list[str]:
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[attr-defined]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - collect every operation's failures, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


@pytest.mark.slow
def test_no_5xx_and_every_response_matches_the_document(tmp_path: Path) -> None:
    """(schemathesis' own pytest plugin does not run under pytest 9: the operations are driven by hand.)"""
    failures = _failures(_schema(tmp_path), KEY, 25)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_a_key_with_one_scope_gets_403_or_a_documented_answer_never_a_5xx(tmp_path: Path) -> None:
    """Every operation called with a key holding each scope alone: where the scope is not enough the answer is a
    documented 403 problem, elsewhere the same checks as with every scope (no 5xx, responses as documented)."""
    schema = _schema(tmp_path)
    failures = [f"[{scope.value}] {failure}" for scope in Scope
                for failure in _failures(schema, ONE_SCOPE[scope], 8)]
    assert not failures, "\n\n".join(failures)
