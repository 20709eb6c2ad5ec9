"""POST /v1/records and the recon / records import / audit verify commands, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from tests.support.harness import Devnet, address_for, bearer, make_settings, wallet, write_toml

REPO = Path(__file__).parents[2]
DEP = address_for("api-rec-dep")
ALICE = address_for("api-rec-alice")


def _client(app: object, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",  # type: ignore[arg-type]
                             headers=headers)


def _item(chain: Devnet, ext: str, **extra: object) -> dict:
    return {"source": "core", "external_id": ext, "kind": "deposit", "chain": "a",
            "token": chain.tokens["usdc"].address, "amount": "2.5", "wallet": DEP, "segregation": "customer",
            "status": "completed", "created_at": "2026-11-27T09:00:00Z", **extra}


async def test_post_records_is_all_or_nothing_with_errors_naming_the_item_and_field(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], chain_a.token_configs("a"),
                             [wallet(DEP, "dep")])
    app = create_app(settings, engine=engine)
    async with _client(app, await bearer(engine, "ingest", name="core-feed")) as client:
        bad = await client.post("/v1/records", json=[_item(chain_a, "r1"), _item(chain_a, "r2", amount="2.5000001")])
        good = await client.post("/v1/records", json=[_item(chain_a, "r1"), _item(chain_a, "r2")])
        again = await client.post("/v1/records", json=[_item(chain_a, "r1")])
        conflict = await client.post("/v1/records", json=[_item(chain_a, "r1", amount="3", kind="withdrawal")])
        one = await client.get("/v1/records/core/r1")
        too_many = await client.post("/v1/records", json=[_item(chain_a, f"x{i}") for i in range(10_001)])
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"] == [{"index": 1, "field": "items[1].amount",
                                     "reason": "has 7 decimal places; the token has 6"}]
    assert good.status_code == 201 and good.json() == {"created": 2, "updated": 0, "unchanged": 0}
    assert again.status_code == 200 and again.json()["unchanged"] == 1
    assert conflict.status_code == 409  # the kind is immutable (a corrected amount alone is a new version)
    assert [e["field"] for e in conflict.json()["errors"]] == ["items[0].kind"]
    assert one.json()["amount"] == "2.5" and one.json()["amount_base_units"] == "2500000"
    assert [(v["version"], v["actor"]) for v in one.json()["versions"]] == [(1, "core-feed")]  # the key's name
    assert too_many.status_code == 413


async def test_import_recon_and_audit_verify_from_the_command_line(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(ALICE, 10**9)
    usdc.transfer(ALICE, DEP, 2_500_000)
    chain_a.anvil.mine(3)
    config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path / "data",
                        chains=[chain_a.chain_config("a")], tokens=chain_a.token_configs("a"),
                        wallets=[wallet(DEP, "d")])
    mined_at = datetime.fromtimestamp(int(chain_a.anvil.get_block("latest")["timestamp"], 16), UTC).isoformat()
    csv = tmp_path / "records.csv"
    csv.write_text("source,external_id,kind,chain,token,amount,wallet,segregation,status,created_at\n"
                   f"core,d-1,deposit,a,{usdc.address},2.5,{DEP},customer,completed,{mined_at}\n")

    def settle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", "--config", str(config), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    assert settle("index", "--once").returncode == 0
    bad_csv = tmp_path / "bad.csv"  # Unicode digits, and a wallet that is not ours: refused by row and field
    bad_csv.write_text("source,external_id,kind,chain,token,amount,wallet,segregation,status,created_at,tx_hash,"
                       "log_index\n"
                       f"core,b-1,deposit,a,{usdc.address},2.5,{DEP},customer,completed,{mined_at},0x{1:064x},\u00b2\n"
                       f"core,b-2,deposit,a,{usdc.address},\u0661\u0662.\u0665,{DEP},customer,completed,{mined_at},,\n"
                       f"core,b-3,deposit,a,{usdc.address},2.5,{ALICE},customer,completed,{mined_at},,\n",
                       encoding="utf-8")
    refused = settle("records", "import", str(bad_csv))
    assert refused.returncode == 1 and " ".join(refused.stderr.split()) == " ".join([  # however it is wrapped
        "row 2: log_index: must be a non-negative integer",
        "row 3: amount: must be a non-negative decimal string such as \"12.5\" (no sign, exponent or comma)",
        "row 4: wallet: not a registered wallet on a"]), refused.stderr
    imported = settle("records", "import", str(csv), "--actor", "ops-import")
    assert imported.returncode == 0, imported.stderr
    assert "created 1" in imported.stdout
    recon = settle("recon", "--once")
    assert recon.returncode == 0 and "matched 1" in recon.stdout, recon.stdout + recon.stderr
    rebuild = settle("recon", "--check-rebuild")
    assert rebuild.returncode == 0 and "rebuild differences: 0" in rebuild.stdout, rebuild.stdout + rebuild.stderr
    ok = settle("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    async with engine.begin() as conn:
        await conn.execute(text("update audit_log set after = replace(after, '2500000', '2600000') "
                                "where action = 'record.ingested'"))
    broken = settle("audit", "verify")
    assert broken.returncode == 1 and "BROKEN at entry" in broken.stderr


async def test_an_oversized_body_is_refused_before_it_is_read_and_nothing_is_written(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    from app.settings import ApiConfig

    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], chain_a.token_configs("a"),
                             [wallet(DEP, "dep")]).model_copy(update={"api": ApiConfig(max_body_bytes=64 * 1024)})
    app = create_app(settings, engine=engine)
    big = [_item(chain_a, f"big-{i}", reference="x" * 200) for i in range(400)]  # ~150 KB of valid records

    async def chunks():  # no Content-Length: counted as it arrives
        body = json.dumps(big).encode()
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    async with _client(app, await bearer(engine, "ingest")) as client:
        declared = await client.post("/v1/records", json=big)
        streamed = await client.post("/v1/records", content=chunks(), headers={"content-type": "application/json"})
        small = await client.post("/v1/records", json=big[:1])
    for reply in (declared, streamed):
        assert reply.status_code == 413 and reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["errors"] == [{"field": "body", "reason": "over 65536 bytes"}]
    assert small.status_code == 201
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM records")) == 1


async def test_records_page_by_keyset_and_every_record_is_seen_once(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], chain_a.token_configs("a"),
                             [wallet(DEP, "dep")])
    app = create_app(settings, engine=engine)
    items = [_item(chain_a, f"p-{i:02}", amount=f"{i}.5", status="pending" if i % 3 else "completed")
             for i in range(23)]
    async with _client(app, await bearer(engine, "ingest", "ops")) as client:
        assert (await client.post("/v1/records", json=items)).status_code == 201

        async def walk(**params: object) -> tuple[list[dict], list[int]]:
            seen, sizes, after = [], [], None
            while True:
                query = {**params, **({"after": after} if after is not None else {})}
                page = (await client.get("/v1/records", params=query)).json()
                seen += page["items"]
                sizes.append(len(page["items"]))
                after = page["next_after"]
                if after is None:
                    return seen, sizes

        every, sizes = await walk(limit=5)
        pending, _ = await walk(limit=4, status="pending")
        default = (await client.get("/v1/records")).json()
        too_big = await client.get("/v1/records", params={"limit": 1001})
        bad_after = await client.get("/v1/records", params={"after": -1})
    assert [r["external_id"] for r in every] == [f"p-{i:02}" for i in range(23)]  # ingest order, each once
    assert sizes == [5, 5, 5, 5, 3]
    assert [r["amount"] for r in every[:3]] == ["0.5", "1.5", "2.5"]
    assert [r["external_id"] for r in pending] == [f"p-{i:02}" for i in range(23) if i % 3]
    assert len(default["items"]) == 23 and default["next_after"] is None
    assert too_big.status_code == 422 and bad_after.status_code == 422
