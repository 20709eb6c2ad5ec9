"""A token is (chain, address): one contract address deployed on two chains, a 6-decimal USDT on one and an
18-decimal DAI on the other, shows each chain's own symbol, decimals, amounts and severities in breaks (list and
detail), the ops queue, the feed, records, transfers and balances, whichever of the two is configured first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.balance_check import check_chain
from app.reconciler import reconcile_once
from chains.devnet import deploy_token
from tests.support.feed_replay import read_all
from tests.support.harness import Devnet, address_for, bearer, index_once, make_settings, wallet

DEP = address_for("ident-dep")
CUSTOMER = address_for("ident-customer")
USDT_BASE, DAI_BASE = 1_250_500_000, 1_250_500_000_000_000_000_000  # 1250.5 of each
EXPECTED = {"a": ("USDT", 6, "1250500000", "1350500000"),
            "b": ("DAI", 18, "1250500000000000000000", "1350500000000000000000")}


def _record(ext: str, chain: str, token: str, amount: str, created: datetime) -> dict:
    return {"source": "core", "external_id": ext, "kind": "deposit", "chain": chain, "token": token,
            "amount": amount, "wallet": DEP, "segregation": "customer", "status": "completed",
            "created_at": created.isoformat()}


@pytest.mark.parametrize("first", ["a", "b"])
async def test_one_address_on_two_chains_keeps_each_chains_decimals_everywhere(
    chain_a: Devnet, chain_b: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, first: str
) -> None:
    usdt = deploy_token(chain_a.anvil, "usdt")  # the deployer's nonce is the same on both chains:
    dai = deploy_token(chain_b.anvil, "dai")    # one address, 6 decimals on a, 18 on b
    assert usdt.address == dai.address and (usdt.decimals(), dai.decimals()) == (6, 18)
    token = usdt.address
    usdt.mint(CUSTOMER, 10**12)
    dai.mint(CUSTOMER, 10**24)
    usdt.transfer(CUSTOMER, DEP, USDT_BASE)
    dai.transfer(CUSTOMER, DEP, DAI_BASE)
    chain_a.anvil.mine(4)
    chain_b.anvil.mine(4)
    configured = {"a": {"chain": "a", "address": token, "symbol": "USDT", "decimals": 6},
                  "b": {"chain": "b", "address": token, "symbol": "DAI", "decimals": 18}}
    second = "b" if first == "a" else "a"
    settings = make_settings(
        tmp_path, database_url,
        [chain_a.chain_config("a", confirmations=1, finality=30), chain_b.chain_config("b", confirmations=1,
                                                                                       finality=30)],
        [configured[first], configured[second]], [wallet(DEP, "dep")])
    settings = settings.model_copy(update={"recon": settings.recon.model_copy(update={"missing_grace_hours": 1})})
    await index_once(settings, engine)
    for chain in settings.chains:
        await check_chain(settings, engine, chain)
    now = datetime.now(UTC)
    app = create_app(settings, engine=engine)
    headers = await bearer(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=headers) as client:
        posted = await client.post("/v1/records", json=[_record("r-a", "a", token, "1350.5", now),
                                                        _record("r-b", "b", token, "1350.5", now)])
        assert posted.status_code == 201, posted.text
        await reconcile_once(settings, engine, now=now + timedelta(hours=2))
        breaks = (await client.get("/v1/breaks", params={"status": "open"})).json()["items"]
        details = [(await client.get(f"/v1/breaks/{b['id']}")).json() for b in breaks]
        queue = (await client.get("/v1/transfers/unmatched")).json()["items"]
        records = (await client.get("/v1/records")).json()["items"]
        transfers = (await client.get("/v1/transfers", params={"wallet": DEP})).json()["items"]
        balances = (await client.get("/v1/balances", params={"wallet": DEP})).json()
        events, _ = await read_all(client, headers)

    chain_of = {settings.chains[0].chain_id: "a", settings.chains[1].chain_id: "b"}

    def token_of(name: str) -> dict:
        symbol, decimals, *_ = EXPECTED[name]
        return {"address": token, "symbol": symbol, "decimals": decimals}

    assert sorted((b["type"], b["token"]["symbol"], b["amount"], b["amount_base_units"], b["severity"])
                  for b in breaks) == [
        ("missing_transfer", "DAI", "1350.5", EXPECTED["b"][3], "medium"),
        ("missing_transfer", "USDT", "1350.5", EXPECTED["a"][3], "medium"),
        ("unmatched_transfer", "DAI", "1250.5", EXPECTED["b"][2], "medium"),
        ("unmatched_transfer", "USDT", "1250.5", EXPECTED["a"][2], "medium")]
    for detail in details:
        items = detail["transfers"] + detail["records"]
        (name,) = {chain_of[i["chain_id"]] for i in items}
        assert detail["token"] == token_of(name) and detail["amount"] in ("1250.5", "1350.5")
        assert [i["amount"] for i in items] == [detail["amount"]]
    assert sorted((chain_of[q["transfer"]["chain_id"]], q["transfer"]["token"]["symbol"], q["transfer"]["amount"],
                   q["severity"], [c["external_id"] for c in q["candidates"]]) for q in queue) == [
        ("a", "USDT", "1250.5", "medium", ["r-a"]), ("b", "DAI", "1250.5", "medium", ["r-b"])]
    assert sorted((chain_of[r["chain_id"]], r["amount"], r["amount_base_units"]) for r in records) == [
        ("a", "1350.5", EXPECTED["a"][3]), ("b", "1350.5", EXPECTED["b"][3])]
    assert sorted((t["chain"], t["token"]["symbol"], t["amount"], t["amount_base_units"]) for t in transfers) == [
        ("a", "USDT", "1250.5", EXPECTED["a"][2]), ("b", "DAI", "1250.5", EXPECTED["b"][2])]
    assert sorted((i["chain"], i["token"]["symbol"], i["confirmed"]["amount"], i["confirmed"]["amount_base_units"])
                  for i in balances["items"]) == [
        ("a", "USDT", "1250.5", EXPECTED["a"][2]), ("b", "DAI", "1250.5", EXPECTED["b"][2])]
    opened = [e["object"] for e in events if e["type"] == "break.opened"]
    assert sorted((b["type"], b["token"]["symbol"], b["token"]["decimals"], b["amount"], b["amount_base_units"])
                  for b in opened) == [
        ("missing_transfer", "DAI", 18, "1350.5", EXPECTED["b"][3]),
        ("missing_transfer", "USDT", 6, "1350.5", EXPECTED["a"][3]),
        ("unmatched_transfer", "DAI", 18, "1250.5", EXPECTED["b"][2]),
        ("unmatched_transfer", "USDT", 6, "1250.5", EXPECTED["a"][2])]
    ingested = [e["object"] for e in events if e["type"] == "record.ingested"]
    assert sorted((r["token"]["symbol"], r["amount"]) for r in ingested) == [("DAI", "1350.5"), ("USDT", "1350.5")]
    confirmed = [e["object"] for e in events if e["type"] == "transfer.confirmed" and e["object"]["recipient"] == DEP]
    assert sorted((t["token"]["symbol"], t["amount"]) for t in confirmed) == [("DAI", "1250.5"), ("USDT", "1250.5")]
