"""Account roll-forward of the daily close: per account (chain, token, wallet), opening + credits - debits =
computed closing, set beside the balance read on chain at the cut-off block. Pure; amounts are ints in base
units of the account's token, never floats.

A difference (on chain - computed) is reported, never absorbed: a USDT-like `DestroyedBlackFunds` burns a
balance without a Transfer event, and only this line shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class AccountKey:
    """A token is (chain, address); an account is that token held by one wallet. Addresses are checksummed."""

    chain_id: int
    token: str
    wallet: str


@dataclass(frozen=True, slots=True)
class Flow:
    """One finalized transfer's effect on one account: `amount` base units in (credit) or out (debit)."""

    account: AccountKey
    amount: int
    is_credit: bool


@dataclass(frozen=True, slots=True)
class AccountLine:
    account: AccountKey
    opening: int
    credits: int
    debits: int
    credit_count: int
    debit_count: int
    on_chain: int | None  # balanceOf at the cut-off block; None when it could not be read

    @property
    def closing(self) -> int:
        return self.opening + self.credits - self.debits

    @property
    def difference(self) -> int | None:
        """On chain minus computed closing; None when the chain could not be read."""
        return None if self.on_chain is None else self.on_chain - self.closing


def roll_forward(openings: Mapping[AccountKey, int], flows: Iterable[Flow],
                 on_chain: Mapping[AccountKey, int | None]) -> list[AccountLine]:
    """Every account that has an opening, a flow or an on-chain reading gets a line, sorted by account. A flow
    of a negative amount is a programming error (ValueError): debits and credits are both non-negative."""
    credits: dict[AccountKey, list[int]] = {}
    debits: dict[AccountKey, list[int]] = {}
    for flow in flows:
        if flow.amount < 0:
            raise ValueError(f"negative flow on {flow.account}")
        (credits if flow.is_credit else debits).setdefault(flow.account, []).append(flow.amount)
    accounts = set(openings) | set(credits) | set(debits) | set(on_chain)
    return [AccountLine(a, openings.get(a, 0), sum(credits.get(a, ())), sum(debits.get(a, ())),
                        len(credits.get(a, ())), len(debits.get(a, ())), on_chain.get(a))
            for a in sorted(accounts)]


def totals(lines: Iterable[AccountLine], group: Mapping[AccountKey, str] | None = None
           ) -> dict[tuple[int, str, str], dict[str, int]]:
    """Sums per (chain, token, group label), `group` mapping an account to e.g. its segregation class or wallet
    kind ("all" when not given). Sums of different tokens are never added together."""
    out: dict[tuple[int, str, str], dict[str, int]] = {}
    for line in lines:
        label = group.get(line.account, "unclassified") if group is not None else "all"
        row = out.setdefault((line.account.chain_id, line.account.token, label),
                             {"opening": 0, "credits": 0, "debits": 0, "closing": 0, "on_chain": 0,
                              "unread": 0})
        row["opening"] += line.opening
        row["credits"] += line.credits
        row["debits"] += line.debits
        row["closing"] += line.closing
        if line.on_chain is None:
            row["unread"] += 1
        else:
            row["on_chain"] += line.on_chain
    return out
