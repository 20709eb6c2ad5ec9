"""API keys and scopes: every endpoint x every scope x no key / unknown key / revoked key, and the keys CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.access import Scope, create_key, revoke_key
from app.api.main import create_app
from app.settings import ApiConfig, Settings
from tests.support.harness import address_for, write_toml

REPO = Path(__file__).parents[2]
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DEP = address_for("auth-dep")
NEW = address_for("auth-new")
RECORD = {"source": "core", "external_id": "auth-1", "kind": "deposit", "chain": "eth", "token": USDC,
          "amount": "1.5", "wallet": DEP, "segregation": "customer", "status": "pending",
          "created_at": "2026-11-27T09:00:00Z"}

# (method, path, body, scopes that may call it (empty: any valid key; None: no key needed), success codes).
# Unknown ids answer 404 (or 400 naming the field) to an authorised caller: authorisation comes first.
ENDPOINTS: list[tuple[str, str, object, set[Scope] | None, set[int]]] = [
    ("GET", "/v1/health", None, None, {200, 503}),
    ("GET", "/v1/chains", None, set(), {200}),
    ("GET", "/v1/transfers", None, {Scope.TREASURY, Scope.OPS}, {200}),
    ("GET", "/v1/transfers/unmatched", None, {Scope.OPS}, {200}),
    ("GET", "/v1/balances", None, {Scope.TREASURY}, {200}),
    ("GET", "/v1/transfers/999", None, {Scope.TREASURY, Scope.OPS}, {404}),
    ("POST", "/v1/records", [RECORD], {Scope.INGEST}, {200, 201}),
    ("GET", "/v1/records", None, {Scope.OPS, Scope.INGEST}, {200}),
    ("GET", "/v1/records/core/auth-1", None, {Scope.OPS, Scope.INGEST}, {200, 404}),
    ("GET", "/v1/breaks", None, {Scope.OPS, Scope.APPROVER}, {200}),
    ("GET", "/v1/breaks/999", None, {Scope.OPS, Scope.APPROVER}, {404}),
    ("POST", "/v1/breaks/999/resolve", {"reason": "spam", "note": "n"}, {Scope.OPS}, {404}),
    ("POST", "/v1/breaks/999/approve", None, {Scope.APPROVER}, {404}),
    ("POST", "/v1/breaks/999/reopen", {"reason": "r"}, {Scope.OPS}, {404}),
    ("POST", "/v1/matches", {"transfer_ids": [999], "record_keys": [{"source": "core", "external_id": "none"}]},
     {Scope.OPS}, {400}),
    ("DELETE", "/v1/matches/999?reason=r", None, {Scope.OPS}, {404}),
    ("GET", "/v1/wallets", None, {Scope.TREASURY, Scope.ADMIN}, {200}),
    ("POST", "/v1/wallets", {"chain": "eth", "address": NEW, "label": "n", "kind": "hot", "segregation": "house"},
     {Scope.ADMIN}, {201}),
    ("PATCH", "/v1/wallets/999", {"label": "x"}, {Scope.ADMIN}, {404}),
    ("GET", "/v1/wallets/999/status", None, {Scope.TREASURY, Scope.ADMIN}, {404}),
    ("GET", "/v1/audit", None, {Scope.ADMIN}, {200}),
    ("GET", "/v1/audit/verify", None, {Scope.ADMIN}, {200}),
    ("GET", "/v1/feed?after=0&limit=10", None, {Scope.FEED}, {200}),
]


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
        wallets=[{"address": DEP, "label": "d", "kind": "deposit", "segregation": "customer"}])  # type: ignore[list-item]


async def test_every_endpoint_answers_401_403_or_success_by_key_and_scope(engine: AsyncEngine, database_url: str,
                                                                        tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, database_url), engine=engine)
    assert uncovered(app) == set(), "routes of the app with no row in ENDPOINTS"
    keys = {scope: await create_key(engine, name=f"only-{scope.value}", scopes=[scope], actor="test")
            for scope in Scope}
    revoked = await create_key(engine, name="gone", scopes=list(Scope), actor="test")
    await revoke_key(engine, "gone", actor="test")
    callers: dict[str, dict[str, str]] = {"no key": {}, "unknown key": {"Authorization": "Bearer stk_nope"},
                                          "not bearer": {"Authorization": f"Basic {keys[Scope.ADMIN]}"},
                                          "revoked key": {"Authorization": f"Bearer {revoked}"}}
    callers |= {scope.value: {"Authorization": f"Bearer {key}"} for scope, key in keys.items()}
    seen: dict[tuple[str, str, str], int] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for method, path, body, allowed, ok in ENDPOINTS:
            for caller, headers in callers.items():
                reply = await client.request(method, path, json=body, headers=headers)
                seen[(method, path, caller)] = reply.status_code
                if allowed is None:
                    expected = ok
                elif caller in ("no key", "unknown key", "not bearer", "revoked key"):
                    expected = {401}
                    assert reply.headers["www-authenticate"].startswith("Bearer")
                elif not allowed or Scope(caller) in allowed:
                    expected = ok
                else:
                    expected = {403}
                assert reply.status_code in expected, (method, path, caller, reply.status_code, reply.text)
                if reply.status_code in (401, 403):
                    assert reply.headers["content-type"] == "application/problem+json"
    assert len(seen) == len(ENDPOINTS) * (4 + len(Scope))
    async with engine.connect() as conn:  # the actor of the ingest is the key's name
        actors = set((await conn.execute(text("SELECT actor FROM record_versions"))).scalars())
    assert actors == {"only-ingest"}


PUBLIC = {("GET", "/v1/health")}  # the only route any caller may call without a key
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _routes(app: object) -> dict[tuple[str, str], object]:
    """Every (method, path) the app serves, from `app.routes` (included routers expanded), and its route."""
    from fastapi.routing import APIRoute, iter_route_contexts

    out: dict[tuple[str, str], object] = {}
    for context in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if context.path in DOCS:
            continue
        assert isinstance(route, APIRoute), f"{context.path}: not an API route; the matrix cannot check it"
        out |= {(method, str(context.path)): route for method in route.methods - {"HEAD"}}
    return out


def uncovered(app: object) -> set[tuple[str, str]]:
    """Routes of the app that no row of ENDPOINTS calls (a row's URL is matched as Starlette would, in order)."""
    from starlette.routing import compile_path

    routes = _routes(app)
    patterns = [(key, compile_path(key[1])[0]) for key in routes]
    called = set()
    for method, url, *_ in ENDPOINTS:
        hit = next((key for key, regex in patterns if key[0] == method and regex.match(url.split("?")[0])), None)
        assert hit is not None, f"{method} {url}: a row of ENDPOINTS that matches no route of the app"
        called.add(hit)
    return set(routes) - called


def unguarded(app: object) -> set[tuple[str, str]]:
    """Routes (but the public ones) whose dependencies include no `require(...)` scope check."""
    def checks(dependant: object) -> bool:
        return any(getattr(d.call, "__name__", "").startswith("require_") or checks(d)
                   for d in dependant.dependencies)  # type: ignore[attr-defined]

    return {key for key, route in _routes(app).items()
            if key not in PUBLIC and not checks(route.dependant)}  # type: ignore[attr-defined]


def test_the_matrix_covers_every_route_of_the_app_and_each_checks_a_scope(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    assert uncovered(app) == set() and unguarded(app) == set()
    extra = create_app(_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db"))  # a route added later
    extra.get("/v1/new-report")(lambda: {})
    extra.delete("/v1/breaks/{break_id}")(lambda break_id: {})
    assert uncovered(extra) == {("GET", "/v1/new-report"), ("DELETE", "/v1/breaks/{break_id}")}
    assert unguarded(extra) == {("GET", "/v1/new-report"), ("DELETE", "/v1/breaks/{break_id}")}


def test_the_openapi_document_declares_the_bearer_scheme(tmp_path: Path) -> None:
    doc = create_app(_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db")).openapi()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "an API key from `settle keys create`"}
    assert "security" not in doc["paths"]["/v1/health"]["get"]
    assert doc["paths"]["/v1/transfers"]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.slow
async def test_keys_cli_prints_a_key_once_stores_its_hash_lists_and_revokes(engine: AsyncEngine, database_url: str,
                                                                          tmp_path: Path) -> None:
    config = tmp_path / "settle.toml"
    write_toml(config, database_url=database_url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}], wallets=[])

    def settle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", "--config", str(config), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    created = settle("keys", "create", "--name", "treasury-bot", "--scope", "treasury,ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("stk_") and len(key) > 40 and "not shown again" in created.stderr
    async with engine.connect() as conn:
        stored = " ".join(str(v) for row in await conn.execute(text("SELECT * FROM api_keys")) for v in row)
    assert key not in stored and key[:10] in stored  # the hash and a prefix, never the key
    listed = settle("keys", "list")
    assert "treasury-bot" in listed.stdout and "treasury,ops" in listed.stdout and key not in listed.stdout
    bad = settle("keys", "create", "--name", "x", "--scope", "treasury,god")
    assert bad.returncode == 2 and "unknown scope 'god'" in bad.stderr
    again = settle("keys", "create", "--name", "treasury-bot", "--scope", "ops")
    assert again.returncode == 1 and "exists" in again.stderr

    # no key cache: a revocation from the CLI (another process) takes effect on the next request
    app = create_app(_settings(tmp_path, database_url).model_copy(update={"api": ApiConfig(key_cache_seconds=0)}),
                     engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/v1/transfers")).status_code == 200
        revoked = settle("keys", "revoke", "treasury-bot")
        assert revoked.returncode == 0, revoked.stderr
        assert (await client.get("/v1/transfers")).status_code == 401
    assert "revoked" in settle("keys", "list").stdout
    async with engine.connect() as conn:
        actions = list((await conn.execute(text("SELECT action FROM audit_log WHERE entity = 'key:treasury-bot' "
                                                "ORDER BY id"))).scalars())
    assert actions == ["key.created", "key.revoked"]


async def test_the_key_cache_trusts_an_active_key_for_its_lifetime_only(engine: AsyncEngine) -> None:
    from app.access import KeyCache, authenticate, hash_key

    now = [100.0]
    cache = KeyCache(5.0, clock=lambda: now[0])
    key = await create_key(engine, name="cached", scopes=[Scope.FEED], actor="test")
    assert (await authenticate(engine, key, cache)).name == "cached"  # type: ignore[union-attr]
    await revoke_key(engine, "cached", actor="test")
    now[0] += 4.9
    assert (await authenticate(engine, key, cache)) is not None  # within the lifetime: still trusted
    now[0] += 0.2
    assert await authenticate(engine, key, cache) is None  # expired: the database says revoked
    assert await authenticate(engine, "stk_guess", cache) is None and cache.get(hash_key("stk_guess")) is None
    uncached = KeyCache(0)
    other = await create_key(engine, name="uncached", scopes=[Scope.FEED], actor="test")
    assert await authenticate(engine, other, uncached) is not None
    await revoke_key(engine, "uncached", actor="test")
    assert await authenticate(engine, other, uncached) is None
