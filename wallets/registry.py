"""The set of company wallets: what each address is, per chain."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from wallets.addresses import Address
from wallets.errors import WalletError


class WalletKind(StrEnum):
    DEPOSIT = "deposit"
    HOT = "hot"
    COLD = "cold"
    GAS = "gas"
    OMNIBUS = "omnibus"


class Segregation(StrEnum):
    CUSTOMER = "customer"
    HOUSE = "house"


@dataclass(frozen=True, slots=True)
class Wallet:
    """A company wallet on one chain. `start_block` is where indexing of this wallet begins (None: the chain's)."""

    chain_id: int
    address: Address
    label: str
    kind: WalletKind
    segregation: Segregation
    start_block: int | None = None


class WalletRegistry:
    """Company wallets by chain, with O(1) membership checks for the hot path."""

    def __init__(self, wallets: Iterable[Wallet]) -> None:
        self._by_key: dict[tuple[int, str], Wallet] = {}
        for wallet in wallets:
            key = (wallet.chain_id, wallet.address.lower())
            if key in self._by_key:
                raise WalletError(f"wallet {wallet.address} is registered twice on chain {wallet.chain_id}")
            self._by_key[key] = wallet

    def on_chain(self, chain_id: int) -> list[Wallet]:
        return [w for (cid, _), w in self._by_key.items() if cid == chain_id]

    def get(self, chain_id: int, address: str) -> Wallet | None:
        return self._by_key.get((chain_id, address.lower()))

    def __len__(self) -> int:
        return len(self._by_key)
