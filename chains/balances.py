"""On-chain balances read with `balanceOf`, pinned to a block by hash (EIP-1898), batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chains.errors import Fatal, MalformedReply
from chains.replies import quantity
from chains.rpc import RpcClient

BALANCE_OF = "0x70a08231"
DECIMALS = "0x313ce567"
CALLS_PER_BATCH = 100


def _block_param(block: int | str) -> Any:
    if isinstance(block, str) and len(block) == 66:
        return {"blockHash": block, "requireCanonical": True}
    return hex(block) if isinstance(block, int) else block


def _call(token: str, wallet: str, at: Any) -> tuple[str, list[Any]]:
    return "eth_call", [{"to": token, "data": BALANCE_OF + "0" * 24 + wallet[2:].lower()}, at]


def _amount(result: Any) -> int:
    """An eth_call's 32-byte word as int ("0x" or null: an address without code answers nothing)."""
    return quantity(result) if result not in ("0x", "", None) else 0


async def balance_of(rpc: RpcClient, token: str, wallet: str, block: int | str) -> int:
    """balanceOf(wallet) in base units at `block`: a number, a tag, or a 0x block hash (pinned exactly)."""
    method, params = _call(token, wallet, _block_param(block))
    return await rpc.call(method, params, expect=_amount)  # type: ignore[no-any-return]


async def balances_of(rpc: RpcClient, token: str, wallets: Sequence[str], block: int | str) -> list[int]:
    """balanceOf for many wallets at one block, in JSON-RPC batches; results in the order of `wallets`."""
    at = _block_param(block)
    out: list[int] = []
    for i in range(0, len(wallets), CALLS_PER_BATCH):
        out.extend(await rpc.batch([_call(token, w, at) for w in wallets[i:i + CALLS_PER_BATCH]], expect=_amount))
    return out


async def native_balance(rpc: RpcClient, wallet: str, block: int | str = "latest") -> int:
    return await rpc.call("eth_getBalance", [wallet, _block_param(block)], expect=quantity)  # type: ignore[no-any-return]


async def token_decimals(rpc: RpcClient, token: str, block: int | str = "latest") -> int | None:
    """The contract's `decimals()`; None when the address answers nothing (no contract there) or reverts (no such
    function)."""
    try:
        result = await rpc.call("eth_call", [{"to": token, "data": DECIMALS}, _block_param(block)])
    except Fatal as exc:
        if "revert" in exc.reason.lower():
            return None
        raise
    if result in ("0x", "", None):
        return None
    value = quantity(result)
    if value > 255:
        raise MalformedReply(f"decimals() of {token} answered {result!r:.80}, not a uint8")
    return value
