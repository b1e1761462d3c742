"""The shared sidebar: a period (presets or any range of UTC days), a time zone and value
filters, read into one hashable `Selection`.

The widgets are drawn by the entry script (`streamlit_app.py`) before the page runs, so they
keep their state when you move between pages; each run writes the selection back into the URL
(`?since=…&until=…&user=…&tz=…`), so a link (the ones in Slack alerts too) opens the same view.

Presets end on the latest day with data (today when there is none), so a warehouse loaded last
week still opens on its data. Filter options are the values seen in the chosen range, most
expensive first; users are capped at `USER_OPTIONS` to stay fast, and the user box accepts any
typed id for the others. Days are UTC days (the warehouse's); the time zone sets how times
(freshness, runs, alerts, switches) are shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from app.dashboard import data
from app.dashboard.ahead import ahead
from app.dashboard.data import Filters
from app.dashboard.queries import DataBounds
from app.dashboard.tables import title

DEFAULT_DAYS = 30
USER_OPTIONS = 500
OPTION_LIMIT = 2000
FILTER_DIMS = ("endpoint", "model", "user", "team")
DAYS_KEY = "days"
PERIOD_KEY = "period"
TZ_KEY = "tz"
CUSTOM = "Custom"
PRESETS = ("Last 7 days", "Last 30 days", "Last 90 days", "Month to date", "Previous month")
DEFAULT_PRESET = "Last 30 days"
ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
)
_SEEDED = "_filters_seeded_from_url"


@dataclass(frozen=True, slots=True)
class Selection:
    """UTC days `since` (inclusive) to `until` (exclusive), the chosen values per dimension,
    and the time zone times are shown in."""

    since: date
    until: date
    filters: Filters
    timezone: str = "UTC"

    @property
    def last_day(self) -> date:
        return self.until - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.until - self.since).days

    def previous(self) -> tuple[date, date]:
        """The period of the same length just before this one."""
        return self.since - timedelta(days=self.days), self.since


def anchor_day(bounds: DataBounds | None, today: date | None = None) -> date:
    return bounds.last.astimezone(UTC).date() if bounds else (today or datetime.now(UTC).date())


def preset_range(preset: str, anchor: date) -> tuple[date, date]:
    """The first and last day (both inclusive) of a preset ending on `anchor`."""
    if preset == "Last 7 days":
        return anchor - timedelta(days=6), anchor
    if preset == "Last 90 days":
        return anchor - timedelta(days=89), anchor
    if preset == "Month to date":
        return anchor.replace(day=1), anchor
    if preset == "Previous month":
        last = anchor.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    return anchor - timedelta(days=DEFAULT_DAYS - 1), anchor


def default_range(bounds: DataBounds | None, today: date | None = None) -> tuple[date, date]:
    """The first and last day (both inclusive) the dashboard opens on."""
    return preset_range(DEFAULT_PRESET, anchor_day(bounds, today))


def filter_key(dim: str) -> str:
    return f"filter_{dim}"


def valid_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def seed_from_url() -> None:
    """On a session's first run, take the days, filters and zone from the URL (`?user=u-1&
    since=2025-11-20&until=2025-11-21`: the links in alerts), so a link opens the right view."""
    if st.session_state.get(_SEEDED):
        return
    st.session_state[_SEEDED] = True
    params = st.query_params
    try:
        since = date.fromisoformat(params["since"]) if "since" in params else None
        until = date.fromisoformat(params["until"]) if "until" in params else None
    except ValueError:
        since = until = None  # a mangled link opens the default range rather than failing
    if since is not None:
        last = (until - timedelta(days=1)) if until is not None and until > since else since
        st.session_state[DAYS_KEY] = (since, last)
        st.session_state[PERIOD_KEY] = CUSTOM
    elif params.get("period") in PRESETS:
        st.session_state[PERIOD_KEY] = params["period"]
    if "tz" in params:
        st.session_state[TZ_KEY] = valid_zone(params["tz"])
    for dim in FILTER_DIMS:
        values = [v for v in params.get_all(dim) if v]
        if values:
            st.session_state[filter_key(dim)] = values


def sidebar(url: str | None, bounds: DataBounds | None, default_zone: str) -> Selection:
    """Draw the sidebar widgets and return what they select (no value filters without data)."""
    seed_from_url()
    anchor = anchor_day(bounds)
    with st.sidebar:
        since, until = _period(anchor)
        zone = _zone(default_zone)
        chosen: list[tuple[str, tuple[str, ...]]] = []
        if url is not None and bounds is not None:
            limits = {d: USER_OPTIONS if d == "user" else OPTION_LIMIT for d in FILTER_DIMS}
            # All at once, the users' (the biggest rollup) first.
            order = sorted(limits, key=lambda d: d != "user")
            ahead(*(data.filter_options.later(url, d, since, until, limits[d]) for d in order))
            for dim in FILTER_DIMS:
                options = data.filter_options(url, dim, since, until, limits[dim])
                # Keep what is already chosen selectable when a new range no longer has it.
                current = [v for v in st.session_state.get(filter_key(dim), []) if v not in options]
                values = st.multiselect(
                    title(dim),
                    [*options, *current],
                    key=filter_key(dim),
                    placeholder="All",
                    accept_new_options=dim == "user",
                    help=_HELP.get(dim),
                )
                if values:
                    chosen.append((dim, tuple(str(v) for v in values)))
    selection = Selection(since=since, until=until, filters=tuple(chosen), timezone=zone)
    _write_url(selection)
    return selection


_HELP = {
    "user": f"The top {USER_OPTIONS} users by spend in the range; type any other user id.",
    "model": "Requests that made at least one call to these models, and those calls' cost.",
}


def _period(anchor: date) -> tuple[date, date]:
    if st.session_state.get(PERIOD_KEY) not in (*PRESETS, CUSTOM):
        st.session_state[PERIOD_KEY] = DEFAULT_PRESET
    preset = st.session_state[PERIOD_KEY]
    if preset != CUSTOM:
        # A preset follows the data: the range is recomputed on every run.
        st.session_state[DAYS_KEY] = preset_range(preset, anchor)
    elif DAYS_KEY not in st.session_state:
        st.session_state[DAYS_KEY] = preset_range(DEFAULT_PRESET, anchor)
    st.selectbox(
        "Period",
        [*PRESETS, CUSTOM],
        key=PERIOD_KEY,
        help="Presets end on the latest day with data.",
    )
    picked: object = st.date_input(
        "Days (UTC)", key=DAYS_KEY, format="YYYY-MM-DD", on_change=_picked_days
    )
    # While a range is being picked the widget holds only its first day.
    days = [d for d in (picked if isinstance(picked, tuple) else (picked,)) if isinstance(d, date)]
    if not days:
        days = list(preset_range(DEFAULT_PRESET, anchor))
    first, last = min(days), max(days)
    return first, last + timedelta(days=1)


def _picked_days() -> None:
    st.session_state[PERIOD_KEY] = CUSTOM


def _zone(default_zone: str) -> str:
    default = valid_zone(default_zone)
    if TZ_KEY not in st.session_state:
        st.session_state[TZ_KEY] = default
    options = list(dict.fromkeys([default, st.session_state[TZ_KEY], *ZONES]))
    zone: str = st.selectbox(
        "Time zone",
        options,
        key=TZ_KEY,
        help="How times are shown (freshness, runs, alerts). Days stay UTC days.",
    )
    return zone


def _write_url(selection: Selection) -> None:
    """The selection into the URL (only what differs from the defaults), rewritten only when
    it changed, so the browser history does not fill with identical entries."""
    wanted: dict[str, list[str]] = {}
    period = st.session_state.get(PERIOD_KEY)
    if period == CUSTOM:
        wanted["since"] = [selection.since.isoformat()]
        wanted["until"] = [selection.until.isoformat()]
    elif period != DEFAULT_PRESET:
        wanted["period"] = [str(period)]
    if selection.timezone != "UTC":
        wanted["tz"] = [selection.timezone]
    for dim, values in selection.filters:
        wanted[dim] = list(values)
    current = {k: st.query_params.get_all(k) for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)
