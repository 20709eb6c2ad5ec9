"""The daily segregation computation (modelled on 17 CFR 1.32), currency by currency: funds held for customers
against the amount required (the customer obligation the core ledger posts for the date), the excess or
deficiency, and the firm's house holdings beside it. Pure; amounts in base units of one asset.

Holdings of several tokens that stand for one currency (USDC on two chains) are summed only after scaling to a
common number of decimals, exactly: the result is in base units of the largest decimals involved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Holding:
    """One account's closing balance at the cut-off: `asset` is the currency it counts towards ("USDC")."""

    asset: str
    amount: int
    decimals: int
    is_customer: bool  # held in a customer-segregated wallet; else house


@dataclass(frozen=True, slots=True)
class SegregationLine:
    asset: str
    decimals: int
    customer_holdings: int
    house_holdings: int
    obligation: int | None  # None: the core ledger posted none for this date

    @property
    def excess(self) -> int | None:
        """Customer holdings minus the obligation: negative is a deficiency; None without an obligation."""
        return None if self.obligation is None else self.customer_holdings - self.obligation

    @property
    def is_deficient(self) -> bool:
        return self.excess is not None and self.excess < 0

    @property
    def status(self) -> str:
        if self.excess is None:
            return "no_obligation"
        return "deficiency" if self.excess < 0 else "exact" if self.excess == 0 else "excess"


def compute(holdings: Iterable[Holding], obligations: Mapping[str, tuple[int, int]]) -> list[SegregationLine]:
    """`obligations`: asset -> (amount, decimals). One line per asset seen on either side, sorted by asset."""
    by_asset: dict[str, list[Holding]] = {}
    for h in holdings:
        by_asset.setdefault(h.asset, []).append(h)
    lines = []
    for asset in sorted(set(by_asset) | set(obligations)):
        items = by_asset.get(asset, [])
        owed = obligations.get(asset)
        decimals = max([h.decimals for h in items] + ([owed[1]] if owed else []), default=0)
        customer = sum(_scaled(h.amount, h.decimals, decimals) for h in items if h.is_customer)
        house = sum(_scaled(h.amount, h.decimals, decimals) for h in items if not h.is_customer)
        lines.append(SegregationLine(asset, decimals, customer, house,
                                     None if owed is None else _scaled(owed[0], owed[1], decimals)))
    return lines


def _scaled(amount: int, decimals: int, to: int) -> int:
    return amount * 10 ** (to - decimals)
