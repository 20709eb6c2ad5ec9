"""A wallet presented as a USD bank account at par, for statements (camt.053, BAI2): token base units become
cents. Each amount is rounded to the cent on its own (half to even), and the sub-cent remainder of a statement is
one explicit rounding entry, so opening + entries + rounding = closing holds exactly in cents, as a statement
verifier checks. Pure; exact integer arithmetic.

Also the runway of a gas wallet: days its native balance lasts at the trailing average burn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import gcd

CENT_DECIMALS = 2


def to_cents(base_units: int, decimals: int) -> int:
    """`to_cents(1_005_000, 6) == 100` (1.005 -> 1.00, half to even); `to_cents(1_015_000, 6) == 102`."""
    if decimals <= CENT_DECIMALS:
        return base_units * 10 ** (CENT_DECIMALS - decimals)
    quotient, remainder = divmod(abs(base_units), 10 ** (decimals - CENT_DECIMALS))
    half = 10 ** (decimals - CENT_DECIMALS)
    if 2 * remainder > half or (2 * remainder == half and quotient % 2 == 1):
        quotient += 1
    return quotient if base_units >= 0 else -quotient


@dataclass(frozen=True, slots=True)
class ParStatement:
    opening_cents: int
    entry_cents: tuple[int, ...]  # signed: credits positive, debits negative, in the order given
    rounding_cents: int  # the explicit rounding entry (signed); 0 means none is written
    closing_cents: int


def at_par(opening: int, entries: Sequence[int], decimals: int) -> ParStatement:
    """`entries`: signed base units (credit positive). The closing is the exact closing rounded once."""
    closing = opening + sum(entries)
    opening_c, closing_c = to_cents(opening, decimals), to_cents(closing, decimals)
    lines = tuple(to_cents(e, decimals) for e in entries)
    return ParStatement(opening_c, lines, closing_c - opening_c - sum(lines), closing_c)


def runway_days(balance: int, daily_burns: Iterable[int]) -> tuple[int, int] | None:
    """Days the balance lasts at the average of `daily_burns` (the trailing days' net spend, base units), as
    an exact fraction (numerator, denominator) reduced; None when nothing was burnt (no finite runway)."""
    burns = list(daily_burns)
    spent = sum(b for b in burns if b > 0)
    if not burns or spent == 0:
        return None
    num, den = balance * len(burns), spent
    g = gcd(num, den) or 1
    return num // g, den // g
