"""The business calendar of the daily close: which days are business days, the cut-off instant of each, and
which business day an instant's activity belongs to. Pure: the time zone, cut-off time and holidays come in.

A business day D's activity is the half-open window (cut-off of the previous business day, cut-off of D]: so a
transfer on a Saturday, a holiday, or after Friday's cut-off belongs to the next business day. Local times are
resolved by `zoneinfo`; the day a clock moves has a 23- or 25-hour window, never a gap or an overlap. A cut-off
time that does not exist on a spring-forward day (02:30 in New York) is read as the wall time an hour later;
one that happens twice on a fall-back day is the first of the two (fold 0), as `zoneinfo` resolves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_SCAN_DAYS = 366  # a calendar with no business day in a year is a configuration error, not a loop


class CalendarError(ValueError):
    """A calendar that cannot answer: no business day within a year, or a naive instant."""


@dataclass(frozen=True)
class BusinessCalendar:
    """`weekend`: ISO weekday numbers that are closed (6 Saturday, 7 Sunday); `holidays`: closed dates."""

    zone: ZoneInfo
    cutoff: time
    holidays: frozenset[date] = frozenset()
    weekend: frozenset[int] = field(default_factory=lambda: frozenset({6, 7}))

    @classmethod
    def of(cls, zone: str, cutoff: str = "17:00", holidays: Iterable[date] = (),
           weekend: Iterable[int] = (6, 7)) -> BusinessCalendar:
        """From settings' text: an IANA zone name and an HH:MM cut-off."""
        hours, _, minutes = cutoff.partition(":")
        return cls(ZoneInfo(zone), time(int(hours), int(minutes or 0)), frozenset(holidays), frozenset(weekend))

    def is_business_day(self, day: date) -> bool:
        return day.isoweekday() not in self.weekend and day not in self.holidays

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after `day`."""
        return self._scan(day, +1)

    def previous_business_day(self, day: date) -> date:
        """The last business day strictly before `day`."""
        return self._scan(day, -1)

    def cutoff_at(self, day: date) -> datetime:
        """The cut-off instant of `day` in UTC (for any day; only business days have a close)."""
        return datetime.combine(day, self.cutoff, tzinfo=self.zone).astimezone(UTC)

    def window(self, day: date) -> tuple[datetime, datetime]:
        """(start exclusive, end inclusive) in UTC of business day `day`'s activity."""
        self._require_business_day(day)
        return self.cutoff_at(self.previous_business_day(day)), self.cutoff_at(day)

    def business_day_of(self, instant: datetime) -> date:
        """The business day whose window holds `instant` (timezone-aware)."""
        if instant.tzinfo is None:
            raise CalendarError("instant must be timezone-aware")
        local_day = instant.astimezone(self.zone).date()
        day = local_day if self.is_business_day(local_day) else self.next_business_day(local_day)
        if instant > self.cutoff_at(day):
            day = self.next_business_day(day)
        return day

    def business_days(self, first: date, last: date) -> Iterator[date]:
        """Every business day from `first` to `last`, both included, in order."""
        day = first if self.is_business_day(first) else self.next_business_day(first)
        while day <= last:
            yield day
            day = self.next_business_day(day)

    def last_closed_day(self, now: datetime) -> date | None:
        """The latest business day whose cut-off is at or before `now` (None only for an impossible calendar)."""
        day = self.business_day_of(now)
        return day if self.cutoff_at(day) <= now else self.previous_business_day(day)

    def _require_business_day(self, day: date) -> None:
        if not self.is_business_day(day):
            raise CalendarError(f"{day.isoformat()} is not a business day")

    def _scan(self, day: date, step: int) -> date:
        for n in range(1, MAX_SCAN_DAYS + 1):
            candidate = day + timedelta(days=step * n)
            if self.is_business_day(candidate):
                return candidate
        raise CalendarError(f"no business day within {MAX_SCAN_DAYS} days of {day.isoformat()}")
