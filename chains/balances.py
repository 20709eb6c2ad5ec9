"""On-chain balances read with `balanceOf`, pinned to a block by hash (EIP-1898)."""

from __future__ import annotations

from chains.rpc import RpcClient

BALANCE_OF = "0x70a08231"


async def balance_of(rpc: RpcClient, token: str, wallet: str, block: int | str) -> int:
    """balanceOf(wallet) in base units at `block`: a number, a tag, or a 0x block hash (pinned exactly)."""
    data = BALANCE_OF + "0" * 24 + wallet[2:].lower()
    if isinstance(block, str) and len(block) == 66:
        at: object = {"blockHash": block, "requireCanonical": True}
    else:
        at = hex(block) if isinstance(block, int) else block
    result = await rpc.call("eth_call", [{"to": token, "data": data}, at])
    return int(result, 16) if result not in ("0x", "", None) else 0


async def native_balance(rpc: RpcClient, wallet: str, block: int | str = "latest") -> int:
    at = hex(block) if isinstance(block, int) else block
    return int(await rpc.call("eth_getBalance", [wallet, at]), 16)
