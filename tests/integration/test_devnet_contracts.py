"""The devnet helpers (chains.devnet) against a real anvil: test tokens, BatchSender, batch blocks, reorgs,
snapshots, and the reproducible solcjs build. Amounts are raw token base units."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak

from chains.devnet import DevnetError, encode_call
from chains.devnet.anvil import REPO_ROOT, Anvil, anvil_binary, batch_block, free_port
from chains.devnet.contracts import ARTIFACTS_DIR, MAX_UINT256, BatchSender, Token, deploy_token

TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ZERO = "0x" + "00" * 20


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def topic_address(t: str) -> str:
    return "0x" + t[-40:]


def transfers(receipt: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(from, to, value) of every Transfer log in a receipt, addresses lowercase."""
    return [
        (topic_address(log["topics"][1]), topic_address(log["topics"][2]), int(log["data"], 16))
        for log in receipt["logs"]
        if log["topics"] and log["topics"][0] == TRANSFER
    ]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil(chain_id=31337, port=free_port()) as node:
        yield node


@pytest.fixture
def acc(anvil: Anvil) -> list[str]:
    return anvil.accounts


def receipt_of(anvil: Anvil, tx_hash: str) -> dict[str, Any]:
    receipt = anvil.receipt(tx_hash)
    assert receipt is not None
    return receipt


def test_anvil_lifecycle(anvil: Anvil, tmp_path: Path) -> None:
    assert anvil.pid is not None
    assert anvil.url == f"http://127.0.0.1:{anvil.port}"
    assert int(anvil.rpc("eth_chainId"), 16) == 31337
    assert len(anvil.accounts) == 10
    with pytest.raises(DevnetError, match="npm ci"):
        anvil_binary(tmp_path)
    with pytest.raises(DevnetError, match="eth_noSuchMethod"):
        anvil.rpc("eth_noSuchMethod")
    other = Anvil(chain_id=5).start()
    pid = other.pid
    assert pid is not None and other.block_number() == 0
    other.stop()
    other.stop()  # idempotent
    assert other.pid is None


@pytest.mark.parametrize(
    ("kind", "decimals", "symbol"), [("usdc", 6, "USDC"), ("usdt", 6, "USDT"), ("dai", 18, "DAI")]
)
def test_tokens_deploy_with_right_decimals(anvil: Anvil, kind: Any, decimals: int, symbol: str) -> None:
    token = deploy_token(anvil, kind)
    assert token.decimals() == decimals
    assert token.symbol() == symbol
    assert token.total_supply() == 0
    assert deploy_token(anvil, kind, "XYZ").symbol() == "XYZ"


def test_usdc_mint_and_burn_emit_transfer_from_and_to_zero(anvil: Anvil, acc: list[str]) -> None:
    usdc = deploy_token(anvil, "usdc")
    mint = receipt_of(anvil, usdc.mint(acc[1], 5_000_000))
    assert transfers(mint) == [(ZERO, acc[1].lower(), 5_000_000)]
    burn = receipt_of(anvil, usdc.burn(acc[1], 2_000_000))
    assert transfers(burn) == [(acc[1].lower(), ZERO, 2_000_000)]
    assert usdc.balance_of(acc[1]) == 3_000_000
    assert usdc.total_supply() == 3_000_000
    # balances at an older block
    assert usdc.balance_of(acc[1], int(mint["blockNumber"], 16)) == 5_000_000


def test_usdc_blacklist_makes_transfer_revert(anvil: Anvil, acc: list[str]) -> None:
    usdc = deploy_token(anvil, "usdc")
    usdc.mint(acc[1], 100)
    usdc.mint(acc[2], 100)
    receipt = receipt_of(anvil, usdc.blacklist(acc[2]))
    assert [log["topics"] for log in receipt["logs"]] == [
        [topic("Blacklisted(address)"), "0x" + "00" * 12 + acc[2][2:].lower()]
    ]
    with pytest.raises(DevnetError, match="blacklisted"):
        usdc.transfer(acc[2], acc[3], 1)  # from
    with pytest.raises(DevnetError, match="blacklisted"):
        usdc.transfer(acc[1], acc[2], 1)  # to
    with pytest.raises(DevnetError, match="blacklisted"):
        usdc.approve(acc[2], acc[3], 1)
    usdc.un_blacklist(acc[2])
    usdc.transfer(acc[2], acc[3], 1)
    assert usdc.balance_of(acc[3]) == 1


def test_usdt_transfer_returns_no_data_but_emits_transfer(anvil: Anvil, acc: list[str]) -> None:
    usdt, usdc = deploy_token(anvil, "usdt"), deploy_token(anvil, "usdc")
    for token in (usdt, usdc):
        token.mint(acc[1], 1_000)
    data = encode_call("transfer(address,uint256)", [acc[2], 10])
    assert anvil.call(usdt.address, data, frm=acc[1]) == "0x"
    assert int(anvil.call(usdc.address, data, frm=acc[1]), 16) == 1  # standard: returns true
    receipt = receipt_of(anvil, usdt.transfer(acc[1], acc[2], 10))
    assert transfers(receipt) == [(acc[1].lower(), acc[2].lower(), 10)]


def test_usdt_destroy_black_funds_zeroes_balance_without_transfer(anvil: Anvil, acc: list[str]) -> None:
    usdt = deploy_token(anvil, "usdt")
    usdt.mint(acc[4], 7_000)
    added = receipt_of(anvil, usdt.add_black_list(acc[4]))
    [log] = added["logs"]
    assert log["topics"] == [topic("AddedBlackList(address)")]  # address is NOT indexed ...
    assert topic_address(log["data"]) == acc[4].lower()  # ... it is in data
    with pytest.raises(DevnetError, match="blacklisted"):
        usdt.transfer(acc[4], acc[5], 1)
    with pytest.raises(DevnetError, match="not blacklisted"):
        usdt.destroy_black_funds(acc[5])
    receipt = receipt_of(anvil, usdt.destroy_black_funds(acc[4]))
    assert usdt.balance_of(acc[4]) == 0
    assert usdt.total_supply() == 0
    assert transfers(receipt) == []
    [log] = receipt["logs"]
    assert log["topics"] == [topic("DestroyedBlackFunds(address,uint256)")]
    assert int(log["data"][66:], 16) == 7_000


def test_usdt_issue_and_redeem_emit_no_transfer(anvil: Anvil, acc: list[str]) -> None:
    usdt = deploy_token(anvil, "usdt")
    issue = receipt_of(anvil, usdt.issue(1_000_000))
    assert transfers(issue) == []
    assert [log["topics"][0] for log in issue["logs"]] == [topic("Issue(uint256)")]
    assert usdt.balance_of(usdt.owner) == 1_000_000 == usdt.total_supply()
    redeem = receipt_of(anvil, usdt.redeem(400_000))
    assert transfers(redeem) == []
    assert [log["topics"][0] for log in redeem["logs"]] == [topic("Redeem(uint256)")]
    assert usdt.balance_of(usdt.owner) == 600_000 == usdt.total_supply()
    with pytest.raises(DevnetError, match="no burn"):
        usdt.burn(acc[0], 1)


@pytest.mark.parametrize("kind", ["usdt", "usdc"])
def test_batch_sender_200_transfers_in_one_tx(anvil: Anvil, acc: list[str], kind: Any) -> None:
    token = deploy_token(anvil, kind)
    sender = BatchSender.deploy(anvil)
    payer = "0x" + "5a" * 20  # not a dev account: impersonated and funded for gas transparently
    token.mint(payer, 10**12)
    recipients = ["0x" + f"{i + 1:040x}" for i in range(200)]
    amounts = [1_000 + i for i in range(200)]
    receipt = receipt_of(anvil, sender.batch_transfer(token, payer, recipients, amounts))
    assert transfers(receipt) == [(payer, r, a) for r, a in zip(recipients, amounts, strict=True)]
    assert int(receipt["gasUsed"], 16) < 30_000_000 // 4
    block_logs = anvil.get_logs({"blockHash": receipt["blockHash"], "topics": [TRANSFER]})
    assert sum(log["transactionHash"] == receipt["transactionHash"] for log in block_logs) == 200
    assert token.balance_of(recipients[-1]) == 1_199


def test_batch_block_puts_several_txs_in_one_block(anvil: Anvil, acc: list[str]) -> None:
    dai = deploy_token(anvil, "dai")
    dai.mint(acc[1], 10**20)
    start = anvil.block_number()
    with batch_block(anvil):
        hashes = [dai.transfer(acc[1], acc[2 + i], 10**18, wait=False) for i in range(4)]
        hashes.append(dai.mint(acc[6], 5, wait=False))
        hashes.append(anvil.send_tx(acc[7], acc[8], "0x", value=1, wait=False))
    assert anvil.block_number() == start + 1
    receipts = [receipt_of(anvil, h) for h in hashes]
    assert {int(r["blockNumber"], 16) for r in receipts} == {start + 1}
    assert all(r["status"] == "0x1" for r in receipts)
    with anvil.in_one_block():
        a, b = dai.transfer(acc[2], acc[3], 1, wait=False), dai.transfer(acc[3], acc[4], 1, wait=False)
    assert receipt_of(anvil, a)["blockHash"] == receipt_of(anvil, b)["blockHash"]
    anvil.send_tx(acc[1], acc[2], "0x", value=1)  # automine is back on


def test_mint_max_uint256_once(anvil: Anvil, acc: list[str]) -> None:
    for kind in ("usdc", "usdt", "dai"):
        token = deploy_token(anvil, kind)
        receipt = receipt_of(anvil, token.mint(acc[1], MAX_UINT256))
        assert transfers(receipt) == [(ZERO, acc[1].lower(), MAX_UINT256)]
        assert token.balance_of(acc[1]) == MAX_UINT256 == token.total_supply()
        with pytest.raises(DevnetError, match="overflow"):
            token.mint(acc[2], 1)


def test_reorg_replaces_last_3_blocks_and_reincludes_listed_tx(anvil: Anvil, acc: list[str]) -> None:
    usdc = deploy_token(anvil, "usdc")
    usdc.mint(acc[1], 1_000)
    kept = usdc.transfer(acc[1], acc[2], 10)  # will be re-included byte for byte (same hash)
    dropped = usdc.transfer(acc[1], acc[3], 20)  # not listed: gone after the reorg
    anvil.mine(1)
    head = anvil.block_number()
    kept_block = int(receipt_of(anvil, kept)["blockNumber"], 16)
    assert kept_block == head - 2
    before = {n: anvil.get_block(n)["hash"] for n in range(head - 3, head + 1)}
    raw = anvil.raw_transaction(kept)
    fresh = {"from": acc[5], "to": usdc.address, "data": encode_call("approve(address,uint256)", [acc[6], 1])}
    anvil.reorg(3, [(raw, 1), (fresh, 2)])
    assert anvil.block_number() == head
    after = {n: anvil.get_block(n)["hash"] for n in range(head - 3, head + 1)}
    assert after[head - 3] == before[head - 3]
    assert all(after[n] != before[n] for n in range(head - 2, head + 1))
    rekept = receipt_of(anvil, kept)
    assert int(rekept["blockNumber"], 16) == head - 3 + 1 + 1  # offset 1 from the first replaced block
    assert rekept["blockHash"] == after[head - 1]
    assert anvil.receipt(dropped) is None
    assert usdc.balance_of(acc[2]) == 10 and usdc.balance_of(acc[3]) == 0
    assert len(anvil.get_block(head)["transactions"]) == 1  # the request tx, signed anew by anvil
    assert usdc.allowance(acc[5], acc[6]) == 1
    with pytest.raises(DevnetError, match="block_offset"):
        anvil.reorg(2, [(fresh, 2)])


def test_snapshot_and_revert(anvil: Anvil, acc: list[str]) -> None:
    dai = deploy_token(anvil, "dai")
    dai.mint(acc[1], 50)
    height = anvil.block_number()
    snap = anvil.snapshot()
    dai.transfer(acc[1], acc[2], 20)
    anvil.mine(3)
    assert anvil.revert(snap) is True
    assert anvil.block_number() == height
    assert dai.balance_of(acc[1]) == 50 and dai.balance_of(acc[2]) == 0
    assert anvil.revert(snap) is False  # a snapshot is consumed by its revert


def test_rollback_and_token_from_address(anvil: Anvil, acc: list[str]) -> None:
    usdc = deploy_token(anvil, "usdc")
    same = Token(anvil, usdc.address.lower(), "UsdcLike")
    assert same.address == usdc.address and same.owner == acc[0]
    anvil.mine(2)
    height = anvil.block_number()
    anvil.rollback(2)
    assert anvil.block_number() == height - 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_contract_build_is_reproducible(tmp_path: Path) -> None:
    """Two builds of a copy of contracts/ are byte-identical, and identical to the committed artifacts."""
    (tmp_path / "contracts").mkdir()
    shutil.copy(REPO_ROOT / "contracts" / "build.js", tmp_path / "contracts" / "build.js")
    shutil.copytree(REPO_ROOT / "contracts" / "src", tmp_path / "contracts" / "src")
    os.symlink(REPO_ROOT / "node_modules", tmp_path / "node_modules")
    out = tmp_path / "chains" / "devnet" / "artifacts"
    snapshots = []
    for run in range(2):
        build = ["node", "contracts/build.js"]
        subprocess.run(build, cwd=tmp_path, check=True, capture_output=True, timeout=120)
        snapshots.append({p.name: p.read_bytes() for p in sorted(out.glob("*.json"))})
        if run == 0:
            shutil.rmtree(out)
    assert snapshots[0] == snapshots[1]
    assert set(snapshots[0]) == {"BatchSender.json", "DaiLike.json", "UsdcLike.json", "UsdtLike.json"}
    for name in snapshots[0]:
        assert filecmp.cmp(out / name, ARTIFACTS_DIR / name, shallow=False), f"{name} is stale: rebuild"
    check = subprocess.run(
        ["node", str(REPO_ROOT / "contracts" / "build.js"), "--check"], check=False, capture_output=True
    )
    assert check.returncode == 0, check.stderr


def test_state_file_and_gas_limit(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with Anvil(chain_id=777, state_file=state, gas_limit=60_000_000) as node:
        assert int(node.get_block()["gasLimit"], 16) == 60_000_000
        usdc = deploy_token(node, "usdc")
        usdc.mint(node.accounts[1], 123)
    assert state.is_file()  # dumped on stop
    with Anvil(chain_id=777, state_file=state) as node:
        assert Token(node, usdc.address, "UsdcLike").balance_of(node.accounts[1]) == 123
