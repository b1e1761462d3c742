"""Rule windows: rolling (`15m`, `1h`, `24h`: the span ending now) or calendar (`day`, `week`,
`month` in the rule's time zone: the period so far).

All datetimes are aware UTC. Calendar boundaries are computed on the wall clock of the zone
(midnight local, ISO weeks from Monday, the first of the month), so a day across a DST change
is 23 or 25 hours long, as the people reading the alert expect. "The same window in an earlier
season" (for anomalies) is also a wall-clock shift: k weeks back, or k months for `month`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from app.durations import parse_duration

CALENDAR = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in UTC; `period_end` is where a calendar period ends (== end if rolling)."""

    start: datetime
    end: datetime
    period_end: datetime
    label: str

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class WindowSpec:
    text: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: str = "UTC") -> WindowSpec:
        if text not in CALENDAR:
            parse_duration(text)
        return cls(text, ZoneInfo(zone))

    @property
    def calendar(self) -> bool:
        return self.text in CALENDAR

    @property
    def rolling_length(self) -> timedelta:
        assert not self.calendar
        return parse_duration(self.text)

    @property
    def season_months(self) -> int:
        """The rhythm history is compared at: a month for `month` windows, else a week."""
        return 1 if self.text == "month" else 0

    def at(self, now: datetime) -> Window:
        """The window being judged at `now`."""
        now = now.astimezone(UTC)
        if not self.calendar:
            return Window(now - self.rolling_length, now, now, self.text)
        start = self.period_start(now)
        return Window(start, now, self.next_period(start), self.text)

    def period_start(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.text == "week":
            day -= timedelta(days=day.weekday())
        elif self.text == "month":
            day = day.replace(day=1)
        return self._utc(day)

    def next_period(self, start: datetime) -> datetime:
        local = start.astimezone(self.zone).replace(tzinfo=None)
        if self.text == "day":
            return self._utc(local + timedelta(days=1))
        if self.text == "week":
            return self._utc(local + timedelta(days=7))
        return self._utc(_add_months(local, 1))

    def shift_back(self, window: Window, seasons: int) -> Window:
        """The same window `seasons` weeks (months for `month` windows) earlier, wall clock."""
        return Window(
            self._back(window.start, seasons),
            self._back(window.end, seasons),
            self._back(window.period_end, seasons),
            window.label,
        )

    def _back(self, moment: datetime, seasons: int) -> datetime:
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        if self.season_months:
            return self._utc(_add_months(local, -seasons * self.season_months))
        return self._utc(local - timedelta(weeks=seasons))

    def _utc(self, wall: datetime) -> datetime:
        return wall.replace(tzinfo=self.zone).astimezone(UTC)

    def default_step(self) -> timedelta:
        """Backtest step: an hour, or less when the window is not a whole number of hours."""
        if self.calendar:
            offsets = {_offset_seconds(self.zone, month) for month in (1, 7)}
            seconds = 3600
            for offset in offsets:
                seconds = _gcd(seconds, offset)
        else:
            seconds = _gcd(int(self.rolling_length.total_seconds()), 3600)
        return timedelta(seconds=max(seconds, 60))


def _add_months(wall: datetime, months: int) -> datetime:
    index = wall.year * 12 + wall.month - 1 + months
    year, month = divmod(index, 12)
    next_first = datetime(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)  # noqa: DTZ001
    last_day = (next_first - timedelta(days=1)).day
    return wall.replace(year=year, month=month + 1, day=min(wall.day, last_day))


def _offset_seconds(zone: ZoneInfo, month: int) -> int:
    probe = datetime(2025, month, 15, 12, tzinfo=zone)
    offset = probe.utcoffset()
    return abs(int(offset.total_seconds())) if offset is not None else 0


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """`moment` rounded down to a multiple of `step` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    seconds = int((moment - epoch).total_seconds())
    size = int(step.total_seconds())
    return epoch + timedelta(seconds=seconds - seconds % size)
