"""The shape of a provider-bill collector (`openai`, `anthropic`): how a run reads its days.

A run reads the days from `lookback_days` before its checkpoint (the last day read, which was
perhaps still in progress) through today, UTC — or from `--since D`, or, the first time, the
last `initial_days` — in windows of `WINDOW_DAYS`. Each window is read whole (every page of the
cost report and of the usage report) before anything is stored; then its rows and the new
checkpoint, `{"through": "YYYY-MM-DD"}`, commit together (`collectors.base`), replacing what
was stored for those days (`collectors.billing_common.replace_days`). A page that fails fails
the window: nothing of it is stored and the checkpoint stays. Subclasses say how to
authenticate (`headers`) and how to read a window (`read_window`).
"""

from __future__ import annotations

import json
import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.orm import Session

from app.settings import Schedule
from collectors.base import Chunk, Collector, CollectorError, Loaded, RunContext
from collectors.billing_common import DAY, BillRows, WindowRead, midnight, replace_days
from collectors.http import ApiClient, Params, RetryPolicy, SettingNames
from collectors.pagination import NextPagePaginator, pages

log = logging.getLogger("spendguard.collectors")

WINDOW_DAYS = 7  # a week per transaction: 168 hourly buckets, the usage APIs' page maximum


def utcnow() -> datetime:
    """The collectors' clock (tests replace it)."""
    return datetime.now(UTC)


class BillingConfig(Protocol):
    """The settings both bill collectors have (`app.settings.models`)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def schedule(self) -> Schedule: ...
    @property
    def admin_key(self) -> SecretStr | None: ...
    @property
    def base_url(self) -> str: ...
    @property
    def lookback_days(self) -> int: ...
    @property
    def initial_days(self) -> int: ...
    @property
    def usage_bucket_width(self) -> str: ...


ConfigT = TypeVar("ConfigT", bound=BillingConfig)


class BillingCollector(Collector[ConfigT, str, BillRows]):
    """A provider's cost and usage reports; subclasses say how to ask and how to read."""

    provider: ClassVar[str]
    key_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._transport, self._sleep, self._clock = transport, sleep, clock
        self._timeout, self._policy = timeout, policy

    @abstractmethod
    def headers(self, key: str) -> dict[str, str]:
        """The authentication (and version) headers."""

    @abstractmethod
    def read_window(self, client: ApiClient, config: ConfigT, first: date, end: date) -> WindowRead:
        """Every page of the cost and usage reports for the days [first, end)."""

    def sources(self, config: ConfigT) -> Sequence[tuple[str, str]]:
        return [("organization", "organization")]

    def now(self) -> datetime:
        return (self._clock or utcnow)()

    def fetch(
        self, run: RunContext[ConfigT], source: str, checkpoint: str | None
    ) -> Generator[Chunk[BillRows], None, None]:
        config = run.config
        key = config.admin_key.get_secret_value() if config.admin_key else ""
        if not key:
            raise CollectorError(
                f"no admin key: set collectors.{self.name}.admin_key to a ${{VAR}} reference"
                f"{self.key_hint}"
            )
        today = self.now().astimezone(UTC).date()
        first = start_day(checkpoint, run.since, config, today)
        windows = list(split(first, today + DAY, WINDOW_DAYS))
        settings = SettingNames(
            f"collectors.{self.name}.admin_key", f"collectors.{self.name}.base_url", self.key_hint
        )
        client = ApiClient(
            config.base_url,
            self.headers(key),
            settings,
            name=self.name,
            transport=self._transport,
            timeout=self._timeout,
            policy=self._policy,
            sleep=self._sleep or time.sleep,
            now=self.now,
        )
        label = f"{first} to {today}"
        with client, run.bar(label, (today + DAY - first).days, unit="days") as bar:
            for lo, hi in windows:
                before = client.calls
                try:
                    read = outside_dropped(self.read_window(client, config, lo, hi), lo, hi)
                except CollectorError as exc:
                    raise CollectorError(
                        f"{exc} [days {lo} to {hi - DAY}: nothing of them stored; "
                        f"{client.calls} API calls in this run]"
                    ) from None
                rows = BillRows(lo, hi, read, client.calls - before)
                checkpoint = json.dumps({"through": (hi - DAY).isoformat()})
                yield Chunk(rows, checkpoint, (midnight(lo), midnight(hi)))
                bar.advance((hi - lo).days)

    def load(self, session: Session, run: RunContext[ConfigT], rows: BillRows) -> Loaded:
        written, replaced = replace_days(session, self.provider, rows, self.now())
        other = sum(1 for c in rows.read.costs if c.currency != "USD")
        if other:
            log.warning("%s: %d cost lines not in USD, stored as such", self.name, other)
        details = {"api_calls": rows.api_calls, "days_replaced": replaced}
        if other:
            details["non_usd_cost_lines"] = other
        return Loaded(rows=written, rejected=rows.read.rejected, details=details)


def start_day(
    checkpoint: str | None, since: datetime | None, config: BillingConfig, today: date
) -> date:
    """The first day a run reads: `--since`, else `lookback_days` before the checkpoint's last
    day, else `initial_days` before today; never after today."""
    if since is not None:
        return min(since.astimezone(UTC).date(), today)
    through = _through(checkpoint)
    if through is None:
        return today - timedelta(days=config.initial_days)
    return min(through - timedelta(days=config.lookback_days), today)


def _through(checkpoint: str | None) -> date | None:
    if not checkpoint:
        return None
    try:
        return date.fromisoformat(json.loads(checkpoint)["through"])
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable checkpoint %r: reading as on a first run", checkpoint)
        return None


def outside_dropped(read: WindowRead, first: date, end: date) -> WindowRead:
    """The lines of days in [first, end) only: others (an API answering more than asked)
    would not be replaced when stored, so they are counted as rejected instead."""
    costs = [c for c in read.costs if first <= c.day < end]
    usage = [u for u in read.usage if first <= u.bucket_start.astimezone(UTC).date() < end]
    dropped = len(read.costs) - len(costs) + len(read.usage) - len(usage)
    if dropped:
        log.warning("%d results outside the days %s to %s asked for: ignored", dropped, first, end)
    return WindowRead(costs, usage, read.rejected + dropped)


M = TypeVar("M", bound=BaseModel)


def parse_result(model: type[M], raw: Any, read: WindowRead, where: str) -> M | None:
    """One result of a bucket as `model`, or None — counted as rejected — if it does not fit
    (its unknown fields are ignored; a wrong type or a missing amount is not)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        read.rejected += 1
        problem = exc.errors()[0]
        at = ".".join(str(p) for p in problem["loc"])
        log.warning("%s: a result was not understood (%s: %s): skipped", where, at, problem["msg"])
        return None


def split(first: date, end: date, days: int) -> Iterator[tuple[date, date]]:
    """[first, end) in consecutive windows of at most `days` days."""
    while first < end:
        yield first, min(first + timedelta(days=days), end)
        first += timedelta(days=days)


def buckets(client: ApiClient, path: str, params: Params) -> Iterator[dict[str, Any]]:
    """Every time bucket of every page of a report (`{"data": [bucket…], "has_more",
    "next_page"}`, OpenAI and Anthropic alike)."""
    where = f"{client.name} GET /{path}"

    def fetch(token: str | None) -> dict[str, Any]:
        page = client.get_json(path, [*params, *([("page", token)] if token else [])])
        if not isinstance(page, dict) or not isinstance(page.get("data", []), list):
            raise CollectorError(f"{where}: the answer is not a page of buckets")
        return page

    for page in pages(fetch, NextPagePaginator(where)):
        yield from (b for b in page.get("data", []) if isinstance(b, dict))
