"""Deploy and drive the devnet test contracts (sources in contracts/src, artifacts built by
`node contracts/build.js` into chains/devnet/artifacts).

Token amounts are raw base units (ints): 1 USDC = 10**6, 1 USDT = 10**6, 1 DAI = 10**18. Gas is in gas units.
Calldata is encoded by hand (4-byte selector + eth_abi), so no web3 contract objects are involved.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from chains.devnet import BlockRef, DevnetError
from chains.devnet.anvil import Anvil

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
MAX_UINT256 = 2**256 - 1
TokenKind = Literal["usdc", "usdt", "dai"]
# kind -> (artifact, default name, default symbol)
TOKEN_KINDS: dict[str, tuple[str, str, str]] = {
    "usdc": ("UsdcLike", "USD Coin (devnet)", "USDC"),
    "usdt": ("UsdtLike", "Tether USD (devnet)", "USDT"),
    "dai": ("DaiLike", "Dai Stablecoin (devnet)", "DAI"),
}
TOKEN_TX_GAS = 200_000
"""Gas limit given to token transactions sent with wait=False (no estimate: pending state may differ)."""
BATCH_BASE_GAS = 100_000
BATCH_GAS_PER_TRANSFER = 60_000
"""Gas limit of a wait=False batch: BATCH_BASE_GAS + BATCH_GAS_PER_TRANSFER * n. Measured: a batch of 200
transfers to new holders uses ~5.4M (UsdtLike) to ~5.9M (UsdcLike) gas, well within anvil's default 30M block
gas limit; only much larger batches need Anvil(gas_limit=...)."""


def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact {"contractName", "abi", "bytecode"} of contract `name` (e.g. "UsdcLike")."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        raise DevnetError(f"no artifact {path}; run `node contracts/build.js`")
    artifact: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return artifact


def _arg_types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : signature.rindex(")")]
    return [t.strip() for t in inner.split(",")] if inner.strip() else []


def encode_call(signature: str, args: Sequence[Any] = ()) -> str:
    """0x-hex calldata for `signature` (e.g. "transfer(address,uint256)"; no tuple types) with `args`."""
    selector = function_signature_to_4byte_selector(signature)
    return "0x" + (selector + encode(_arg_types(signature), list(args))).hex()


def prepare_sender(
    anvil: Anvil, address: str, *, min_wei: int = 10**18, top_up_wei: int = 10 * 10**18
) -> None:
    """Make any `address` usable as a sender: dev accounts are left alone; others are impersonated and, when
    their ETH balance is below `min_wei`, set to `top_up_wei` (wei) to pay for gas."""
    if address.lower() in {a.lower() for a in anvil.accounts}:
        return
    anvil.impersonate(address)
    if anvil.get_balance(address) < min_wei:
        anvil.set_balance(address, top_up_wei)


def deploy(anvil: Anvil, name: str, args: Sequence[Any] = (), frm: str | None = None) -> str:
    """Deploy artifact `name` with constructor `args` from `frm` (default: dev account 0); returns the
    checksummed contract address."""
    artifact = load_artifact(name)
    ctor: dict[str, Any] = next((i for i in artifact["abi"] if i["type"] == "constructor"), {"inputs": []})
    types = [inp["type"] for inp in ctor["inputs"]]
    if len(types) != len(args):
        raise DevnetError(f"{name} constructor takes {len(types)} argument(s), got {len(args)}")
    data = artifact["bytecode"] + encode(types, list(args)).hex()
    sender = frm if frm is not None else anvil.accounts[0]
    prepare_sender(anvil, sender)
    receipt = anvil.wait_for_receipt(anvil.send_tx(sender, None, data))
    return to_checksum_address(receipt["contractAddress"])


class Token:
    """A deployed UsdcLike / UsdtLike / DaiLike. Amounts are raw base units.

    Transactions go out from `frm` (owner operations default to `owner`, the deployer). Any address may be
    a sender: non-dev addresses are impersonated and funded with gas money transparently. With `wait=True`
    (the default) a send is gas-estimated (a revert raises DevnetError with the reason) and waits for its
    receipt; with `wait=False` it is sent with gas TOKEN_TX_GAS and returns at once (see `batch_block`).
    """

    def __init__(self, anvil: Anvil, address: str, artifact: str, *, owner: str | None = None) -> None:
        self.anvil = anvil
        self.address = to_checksum_address(address)
        self.artifact = artifact
        self.owner = owner if owner is not None else anvil.accounts[0]

    def __repr__(self) -> str:
        return f"Token({self.artifact} at {self.address})"

    def _require(self, method: str, *artifacts: str) -> None:
        if self.artifact not in artifacts:
            raise DevnetError(f"{self.artifact} has no {method}; only {', '.join(artifacts)}")

    def send(self, frm: str, signature: str, args: Sequence[Any] = (), *, wait: bool = True) -> str:
        """Send any token function from `frm`; returns the tx hash."""
        prepare_sender(self.anvil, frm)
        gas = None if wait else TOKEN_TX_GAS
        return self.anvil.send_tx(frm, self.address, encode_call(signature, args), wait=wait, gas=gas)

    def call(
        self, signature: str, args: Sequence[Any], out_types: Sequence[str], block: BlockRef = "latest"
    ) -> Any:
        """eth_call a view function; returns the single decoded value (or a tuple for several `out_types`)."""
        raw = self.anvil.call(self.address, encode_call(signature, args), block=block)
        values = decode(list(out_types), bytes.fromhex(raw[2:]))
        return values[0] if len(values) == 1 else values

    # ---- ERC-20 ----

    def transfer(self, frm: str, to: str, amount: int, *, wait: bool = True) -> str:
        return self.send(frm, "transfer(address,uint256)", [to, amount], wait=wait)

    def transfer_from(self, spender: str, frm: str, to: str, amount: int, *, wait: bool = True) -> str:
        """`spender` moves `amount` from `frm` to `to` using its allowance."""
        return self.send(spender, "transferFrom(address,address,uint256)", [frm, to, amount], wait=wait)

    def approve(self, frm: str, spender: str, amount: int, *, wait: bool = True) -> str:
        return self.send(frm, "approve(address,uint256)", [spender, amount], wait=wait)

    def balance_of(self, addr: str, block: BlockRef = "latest") -> int:
        return int(self.call("balanceOf(address)", [addr], ["uint256"], block))

    def allowance(self, holder: str, spender: str, block: BlockRef = "latest") -> int:
        return int(self.call("allowance(address,address)", [holder, spender], ["uint256"], block))

    def total_supply(self, block: BlockRef = "latest") -> int:
        return int(self.call("totalSupply()", [], ["uint256"], block))

    def decimals(self) -> int:
        return int(self.call("decimals()", [], ["uint8"]))

    def symbol(self) -> str:
        return str(self.call("symbol()", [], ["string"]))

    def name(self) -> str:
        return str(self.call("name()", [], ["string"]))

    # ---- supply (Transfer from / to 0x0) ----

    def mint(self, to: str, amount: int, *, frm: str | None = None, wait: bool = True) -> str:
        """Owner mints `amount` to `to`: Transfer(0x0, to, amount) on every kind."""
        return self.send(frm or self.owner, "mint(address,uint256)", [to, amount], wait=wait)

    def burn(self, frm: str, amount: int, *, wait: bool = True) -> str:
        """`frm` burns its own `amount`: Transfer(frm, 0x0, amount). UsdcLike / DaiLike only."""
        self._require("burn", "UsdcLike", "DaiLike")
        return self.send(frm, "burn(uint256)", [amount], wait=wait)

    # ---- UsdcLike blacklist ----

    def blacklist(self, addr: str, *, wait: bool = True) -> str:
        """UsdcLike: emits Blacklisted(addr); transfers/approvals to or from `addr` then revert."""
        self._require("blacklist", "UsdcLike")
        return self.send(self.owner, "blacklist(address)", [addr], wait=wait)

    def un_blacklist(self, addr: str, *, wait: bool = True) -> str:
        self._require("unBlacklist", "UsdcLike")
        return self.send(self.owner, "unBlacklist(address)", [addr], wait=wait)

    # ---- UsdtLike quirks (no Transfer events) ----

    def add_black_list(self, addr: str, *, wait: bool = True) -> str:
        """UsdtLike: emits AddedBlackList(addr) (address in data); `addr` can no longer send."""
        self._require("addBlackList", "UsdtLike")
        return self.send(self.owner, "addBlackList(address)", [addr], wait=wait)

    def remove_black_list(self, addr: str, *, wait: bool = True) -> str:
        self._require("removeBlackList", "UsdtLike")
        return self.send(self.owner, "removeBlackList(address)", [addr], wait=wait)

    def destroy_black_funds(self, addr: str, *, wait: bool = True) -> str:
        """UsdtLike: zeroes a blacklisted balance, totalSupply shrinks; DestroyedBlackFunds, NO Transfer."""
        self._require("destroyBlackFunds", "UsdtLike")
        return self.send(self.owner, "destroyBlackFunds(address)", [addr], wait=wait)

    def issue(self, amount: int, *, wait: bool = True) -> str:
        """UsdtLike: owner balance and totalSupply grow by `amount`; Issue(amount), NO Transfer."""
        self._require("issue", "UsdtLike")
        return self.send(self.owner, "issue(uint256)", [amount], wait=wait)

    def redeem(self, amount: int, *, wait: bool = True) -> str:
        """UsdtLike: owner balance and totalSupply shrink by `amount`; Redeem(amount), NO Transfer."""
        self._require("redeem", "UsdtLike")
        return self.send(self.owner, "redeem(uint256)", [amount], wait=wait)


def deploy_token(
    anvil: Anvil, kind: TokenKind, symbol: str | None = None, *, name: str | None = None,
    frm: str | None = None,
) -> Token:
    """Deploy a fresh test token of `kind` ("usdc" 6 decimals, "usdt" 6 decimals, "dai" 18 decimals) from
    `frm` (default dev account 0, which becomes the owner)."""
    if kind not in TOKEN_KINDS:
        raise DevnetError(f"unknown token kind {kind!r}; expected one of {sorted(TOKEN_KINDS)}")
    artifact, default_name, default_symbol = TOKEN_KINDS[kind]
    owner = frm if frm is not None else anvil.accounts[0]
    address = deploy(anvil, artifact, [name or default_name, symbol or default_symbol], frm=owner)
    return Token(anvil, address, artifact, owner=owner)


class BatchSender:
    """The BatchSender contract: many token Transfers (one per recipient) in ONE transaction."""

    def __init__(self, anvil: Anvil, address: str) -> None:
        self.anvil = anvil
        self.address = to_checksum_address(address)

    @classmethod
    def deploy(cls, anvil: Anvil, frm: str | None = None) -> BatchSender:
        return cls(anvil, deploy(anvil, "BatchSender", frm=frm))

    def batch_transfer(
        self, token: Token, frm: str, recipients: Sequence[str], amounts: Sequence[int], *, wait: bool = True
    ) -> str:
        """Pay `amounts[i]` (base units) of `token` from `frm` to `recipients[i]` in one tx; returns its hash.

        Approves this contract for MAX_UINT256 first when the allowance is below the total. With wait=False
        the batch gets gas BATCH_BASE_GAS + BATCH_GAS_PER_TRANSFER * n instead of an estimate.
        """
        if len(recipients) != len(amounts):
            raise DevnetError(f"{len(recipients)} recipients but {len(amounts)} amounts")
        if token.allowance(frm, self.address) < sum(amounts):
            token.approve(frm, self.address, MAX_UINT256, wait=wait)
        prepare_sender(self.anvil, frm)
        data = encode_call(
            "batchTransfer(address,address[],uint256[])", [token.address, list(recipients), list(amounts)]
        )
        gas = None if wait else BATCH_BASE_GAS + BATCH_GAS_PER_TRANSFER * len(recipients)
        return self.anvil.send_tx(frm, self.address, data, wait=wait, gas=gas)
