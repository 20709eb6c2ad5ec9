"""Roll a wallet's balance forward from its opening balance: pure arithmetic over indexed flows, in base units.

`finalized` = opening + finalized in - finalized out; `confirmed` adds the confirmed-but-not-final flows;
`pending_in` / `pending_out` are `seen` transfers (not yet confirmed). Orphaned transfers never count."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Flows:
    """In and out totals per transfer state, for one (wallet, token)."""

    inflow: dict[str, int] = field(default_factory=dict)
    outflow: dict[str, int] = field(default_factory=dict)

    def add(self, state: str, amount: int, incoming: bool) -> None:
        side = self.inflow if incoming else self.outflow
        side[state] = side.get(state, 0) + amount


@dataclass(frozen=True)
class BalanceView:
    finalized: int | None
    confirmed: int | None
    pending_in: int
    pending_out: int
    net_finalized: int  # flows alone, known even without an opening balance
    net_confirmed: int


def roll_forward(opening: int | None, flows: Flows) -> BalanceView:
    def net(state: str) -> int:
        return flows.inflow.get(state, 0) - flows.outflow.get(state, 0)

    net_finalized = net("finalized")
    net_confirmed = net_finalized + net("confirmed")
    return BalanceView(
        finalized=None if opening is None else opening + net_finalized,
        confirmed=None if opening is None else opening + net_confirmed,
        pending_in=flows.inflow.get("seen", 0), pending_out=flows.outflow.get("seen", 0),
        net_finalized=net_finalized, net_confirmed=net_confirmed)
