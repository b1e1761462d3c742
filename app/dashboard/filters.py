"""The sidebar: a range of UTC days and value filters, read into one hashable `Selection`.

The default range is the 30 days ending at the latest day with data (today when there is none),
so a warehouse loaded last week still opens on its data. Filter options are the values seen in
the chosen range, most expensive first; users are capped at `USER_OPTIONS` to stay fast, and the
user box accepts any typed id for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import streamlit as st

from app.dashboard import data
from app.dashboard.data import Filters
from app.dashboard.queries import DataBounds
from app.dashboard.tables import title

DEFAULT_DAYS = 30
USER_OPTIONS = 500
OPTION_LIMIT = 2000
FILTER_DIMS = ("endpoint", "model", "user", "team")
DAYS_KEY = "days"


@dataclass(frozen=True, slots=True)
class Selection:
    """UTC days `since` (inclusive) to `until` (exclusive) and the chosen values per dimension."""

    since: date
    until: date
    filters: Filters

    @property
    def last_day(self) -> date:
        return self.until - timedelta(days=1)


def default_range(bounds: DataBounds | None, today: date | None = None) -> tuple[date, date]:
    """The first and last day (both inclusive) the page opens on."""
    end = bounds.last.astimezone(UTC).date() if bounds else (today or datetime.now(UTC).date())
    return end - timedelta(days=DEFAULT_DAYS - 1), end


def filter_key(dim: str) -> str:
    return f"filter_{dim}"


def seed_from_url() -> None:
    """On a session's first run, take the days and filters from the URL (`?user=u-1&since=
    2025-11-20&until=2025-11-21`: the links in alerts), so a link opens the right view."""
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
    for dim in FILTER_DIMS:
        values = [v for v in params.get_all(dim) if v]
        if values:
            st.session_state[filter_key(dim)] = values


_SEEDED = "_filters_seeded_from_url"


def sidebar(url: str, bounds: DataBounds | None) -> Selection:
    """Draw the sidebar widgets and return what they select."""
    seed_from_url()
    with st.sidebar:
        since, until = _days(default_range(bounds))
        chosen: list[tuple[str, tuple[str, ...]]] = []
        for dim in FILTER_DIMS:
            limit = USER_OPTIONS if dim == "user" else OPTION_LIMIT
            options = data.filter_options(url, dim, since, until, limit)
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
    return Selection(since=since, until=until, filters=tuple(chosen))


_HELP = {
    "user": f"The top {USER_OPTIONS} users by spend in the range; type any other user id.",
    "model": "Requests that made at least one call to these models, and those calls' cost.",
}


def _days(default: tuple[date, date]) -> tuple[date, date]:
    # A value already in the session (picked, or seeded from the URL) wins over the default;
    # passing both would make Streamlit warn.
    picked: object
    if DAYS_KEY in st.session_state:
        picked = st.date_input("Days (UTC)", key=DAYS_KEY, format="YYYY-MM-DD")
    else:
        picked = st.date_input("Days (UTC)", value=default, key=DAYS_KEY, format="YYYY-MM-DD")
    # While a range is being picked the widget holds only its first day.
    days = [d for d in (picked if isinstance(picked, tuple) else (picked,)) if isinstance(d, date)]
    if not days:
        days = list(default)
    first, last = min(days), max(days)
    return first, last + timedelta(days=1)
