"""Local devnet for tests, the demo and benchmarks: an anvil process (`chains.devnet.anvil`) and the test
stablecoins compiled from contracts/src (`chains.devnet.contracts`, artifacts in chains/devnet/artifacts).

Units everywhere: ETH in wei, token amounts in raw base units (ints, never floats), gas in gas units, block
numbers as ints; hex quantities are converted at the JSON-RPC boundary. Nothing here reads the environment.

This module holds the shared error and encoding helpers and re-exports the public API lazily, so
`from chains.devnet import Anvil, deploy_token` works without import cycles.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chains.devnet.anvil import REPO_ROOT, Anvil, anvil_binary, batch_block, free_port
    from chains.devnet.contracts import (
        ARTIFACTS_DIR,
        MAX_UINT256,
        BatchSender,
        Token,
        TokenKind,
        deploy,
        deploy_token,
        encode_call,
        load_artifact,
        prepare_sender,
    )

BlockRef = int | str
"""A block number (int) or a tag such as "latest", "pending", "safe", "finalized", "earliest"."""

_QUANTITY_KEYS = frozenset(
    {"value", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce", "chainId"}
)
__all__ = [
    "ARTIFACTS_DIR", "MAX_UINT256", "REPO_ROOT", "Anvil", "BatchSender", "BlockRef", "DevnetError", "Token",
    "TokenKind", "anvil_binary", "batch_block", "deploy", "deploy_token", "encode_call", "free_port",
    "load_artifact", "prepare_sender", "to_block_param", "tx_request",
]
_ANVIL_NAMES = frozenset({"REPO_ROOT", "Anvil", "anvil_binary", "batch_block", "free_port"})
_LOCAL_NAMES = frozenset({"BlockRef", "DevnetError", "to_block_param", "tx_request"})
_CONTRACTS_NAMES = frozenset(__all__) - _ANVIL_NAMES - _LOCAL_NAMES


class DevnetError(Exception):
    """A devnet helper failed: anvil missing or not starting, a JSON-RPC error (`code`, `data` from the node),
    or a reverted transaction."""

    def __init__(self, message: str, *, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


def to_block_param(block: BlockRef) -> str:
    """JSON-RPC block parameter: ints become hex quantities, tags pass through."""
    return hex(block) if isinstance(block, int) else block


def tx_request(tx: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of a transaction request with int quantities (wei, gas, nonce, chainId) as hex strings."""
    out = dict(tx)
    for key in _QUANTITY_KEYS & out.keys():
        if isinstance(out[key], int):
            out[key] = hex(out[key])
    return out


def __getattr__(name: str) -> Any:
    """Lazy re-export of the submodules' public names (importing them here eagerly would be a cycle)."""
    if name in _ANVIL_NAMES:
        return getattr(importlib.import_module("chains.devnet.anvil"), name)
    if name in _CONTRACTS_NAMES:
        return getattr(importlib.import_module("chains.devnet.contracts"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
