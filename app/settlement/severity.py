"""Break severity from amount and age, and the SLA due time. Pure: thresholds come in as arguments.

Stablecoin amounts are compared at par in token units (1 USDC = 1 unit), exactly, in base units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from app.settlement.model import BreakType


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


ORDER = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
# break types that are at least this severe whatever their amount: paying a look-alike is a likely poisoning loss
TYPE_FLOORS: Mapping[str, Severity] = {BreakType.OUTBOUND_LOOKALIKE.value: Severity.HIGH}


@dataclass(frozen=True)
class SeverityPolicy:
    """`amounts`: whole token units from which a break is medium, high, critical. `ages`: age from which it is
    at least high, critical. `sla`: time to resolve per severity, from when the break opened."""

    amounts: tuple[int, int, int] = (1_000, 10_000, 100_000)
    ages: tuple[timedelta, timedelta] = (timedelta(hours=24), timedelta(hours=72))
    sla: Mapping[Severity, timedelta] = field(default_factory=lambda: {
        Severity.LOW: timedelta(hours=72), Severity.MEDIUM: timedelta(hours=24), Severity.HIGH: timedelta(hours=8),
        Severity.CRITICAL: timedelta(hours=2)})


def severity(amount_base_units: int, decimals: int, age: timedelta, policy: SeverityPolicy,
             floor: Severity = Severity.LOW) -> Severity:
    """The largest of the amount's level, the age's level and `floor` (see `TYPE_FLOORS`)."""
    by_amount = sum(amount_base_units >= threshold * 10**decimals for threshold in policy.amounts)
    by_age = 2 if age >= policy.ages[0] else 0
    by_age = 3 if age >= policy.ages[1] else by_age
    return ORDER[max(by_amount, by_age, ORDER.index(floor))]


def due_at(opened_at: datetime, level: Severity, policy: SeverityPolicy) -> datetime:
    return opened_at + policy.sla[level]
