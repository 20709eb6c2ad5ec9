"""GET /v1/balances on anvil: balances now and as of past blocks equal balanceOf at those blocks; pending
transfers show as pending; totals add up by token and segregation class."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.balance_check import check_chain
from tests.support.harness import Devnet, address_for, bearer, index_once, make_settings, wallet

DEPOSIT = address_for("deposit-bal")
HOT = address_for("hot-bal")
CUSTOMER = address_for("customer-bal")


async def test_balances_now_and_as_of_past_blocks_equal_balance_of(chain_a: Devnet, engine: AsyncEngine,
                                                                  database_url: str, tmp_path: Path) -> None:
    usdc, dai = chain_a.tokens["usdc"], chain_a.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    usdc.mint(DEPOSIT, 5_000_000)  # before indexing starts: the opening balance carries it
    start = chain_a.anvil.block_number() + 1
    points = []
    for amount in (1_250_000, 3_000_001, 77):
        usdc.transfer(CUSTOMER, DEPOSIT, amount)
        points.append(chain_a.anvil.block_number())
    usdc.transfer(DEPOSIT, HOT, 4_000_000)
    dai.mint(HOT, 2 * 10**18)
    points.append(chain_a.anvil.block_number())
    chain_a.anvil.mine(8)
    usdc.transfer(CUSTOMER, DEPOSIT, 5)  # still `seen`
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a", start_block=start)],
                             chain_a.token_configs("a"), [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")])
    await index_once(settings, engine)
    await check_chain(settings, engine, settings.chains[0])  # reads and keeps the opening balances
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "treasury")) as client:
        now = (await client.get("/v1/balances")).json()
        past = {b: (await client.get("/v1/balances", params={"as_of": str(b)})).json() for b in points}
        one = (await client.get("/v1/balances", params={"wallet": DEPOSIT, "token": usdc.address})).json()
        bad = await client.get("/v1/balances", params={"as_of": "yesterday"})
        superscript = await client.get("/v1/balances", params={"as_of": "\u00b2"})
        bad_token = await client.get("/v1/balances", params={"wallet": DEPOSIT, "token": usdc.address[:-1] + "G"})
        bad_checksum = await client.get("/v1/balances", params={"wallet": DEPOSIT, "token": usdc.address.swapcase()
                                                                .replace("0X", "0x")})
        ops = await client.get("/v1/balances", headers=await bearer(engine, "ops"))

    def pick(reply: dict, who: str, token: str) -> dict:
        return next(i for i in reply["items"] if i["wallet"] == who and i["token"]["address"] == token)

    dep_now = pick(now, DEPOSIT, usdc.address)
    assert dep_now["opening"]["amount_base_units"] == "5000000"
    assert int(dep_now["confirmed"]["amount_base_units"]) == usdc.balance_of(DEPOSIT) - 5  # the seen 5 is pending
    assert dep_now["pending_in"]["amount_base_units"] == "5"
    assert dep_now["last_check"]["difference"]["amount_base_units"] == "0"
    assert pick(now, HOT, dai.address)["confirmed"]["amount"] == "2"
    for block, reply in past.items():
        for who in (DEPOSIT, HOT):
            for token in (usdc, dai):
                assert int(pick(reply, who, token.address)["confirmed"]["amount_base_units"]) == \
                    token.balance_of(who, block), (block, who, token.address)
    usdc_total = next(t for t in now["totals_by_token"] if t["token"]["address"] == usdc.address)
    assert int(usdc_total["confirmed"]["amount_base_units"]) == \
        int(dep_now["confirmed"]["amount_base_units"]) + int(pick(now, HOT, usdc.address)["confirmed"]
                                                             ["amount_base_units"])
    by_segregation = {(t["token"]["address"], t["segregation"]): t for t in now["totals_by_segregation"]}
    assert by_segregation[(usdc.address, "customer")]["confirmed"] == dep_now["confirmed"]
    assert [(i["wallet"], i["token"]["symbol"]) for i in one["items"]] == [(DEPOSIT, "USDC")]
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "as_of"
    assert superscript.status_code == 400 and superscript.json()["errors"][0]["field"] == "as_of"
    assert bad_token.status_code == 422 and bad_token.json()["errors"][0]["field"] == "token"
    assert bad_checksum.status_code == 400 and bad_checksum.json()["errors"][0]["field"] == "token"
    assert ops.status_code == 403


LATE = address_for("late-bal")  # registered from a later block: its opening balance is read there


async def test_as_of_before_a_pairs_opening_block_is_null_for_that_pair(chain_a: Devnet, engine: AsyncEngine,
                                                                      database_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    usdc.transfer(CUSTOMER, DEPOSIT, 1_000_000)
    usdc.transfer(CUSTOMER, LATE, 7_000_000)
    early = chain_a.anvil.block_number()  # before LATE's opening block
    chain_a.anvil.rpc("evm_increaseTime", [120])  # so that its block time differs from the later blocks'
    chain_a.anvil.mine(3)
    opening_block = chain_a.anvil.block_number()  # LATE's opening balance is read here: 7 USDC
    start = opening_block + 1
    usdc.transfer(CUSTOMER, LATE, 500_000)
    usdc.transfer(CUSTOMER, DEPOSIT, 2_000_000)
    after = chain_a.anvil.block_number()
    chain_a.anvil.mine(8)

    def time_of(block: int) -> str:
        stamp = int(chain_a.anvil.get_block(block)["timestamp"], 16)
        return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")

    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], chain_a.token_configs("a"),
                             [wallet(DEPOSIT, "dep"), wallet(LATE, "late", start_block=start)])
    await index_once(settings, engine)
    await check_chain(settings, engine, settings.chains[0])
    app = create_app(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=await bearer(engine, "treasury")) as client:
        replies = {as_of: (await client.get("/v1/balances", params={"as_of": as_of, "token": usdc.address})).json()
                   for as_of in (str(early), str(opening_block), str(after), time_of(early), time_of(after))}

    def late(reply: dict) -> tuple:
        line = next(i for i in reply["items"] if i["wallet"] == LATE)
        return (line["opening"], line["confirmed"]["amount_base_units"], line["finalized"]["amount_base_units"])

    for as_of in (str(early), time_of(early)):  # before the opening block: unknown, not the later opening
        assert late(replies[as_of]) == (None, None, None), as_of
        total = replies[as_of]["totals_by_token"][0]
        assert total["pairs_without_opening_balance"] == 1, as_of
    assert late(replies[str(opening_block)])[1] == "7000000"
    for as_of in (str(after), time_of(after)):
        assert late(replies[as_of])[1] == "7500000", as_of
    dep = next(i for i in replies[str(early)]["items"] if i["wallet"] == DEPOSIT)
    assert dep["confirmed"]["amount_base_units"] == "1000000"  # a pair opened at the chain's start is unaffected
