"""Loading ahead (`app.dashboard.ahead`): a page's loaders run side by side on the pool, each
value is computed once, and the page's own call gets it (from the cache, or by waiting for it);
a call that fails ahead fails again, visibly, when the page makes it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.dashboard.ahead import WORKERS, ahead
from app.dashboard.versions import versioned
from app.warehouse.engine import make_engine


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ahead.db'}"


_engines: dict[str, Engine] = {}


def _engine(url: str) -> Engine:
    return _engines.setdefault(url, make_engine(url))


def _wait_for(check: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_calls_run_side_by_side_and_the_page_gets_their_values_computed_once(url: str) -> None:
    started: list[int] = []
    release = threading.Event()

    @versioned(_engine)
    def double(url: str, x: int) -> int:
        started.append(x)
        assert release.wait(10)
        return 2 * x

    futures = ahead(*(double.later(url, x) for x in range(1, WORKERS + 1)))
    # Every worker is inside a call at once: they run side by side.
    _wait_for(lambda: len(started) == WORKERS)
    threading.Timer(0.2, release.set).start()
    # The page asks while the values are still being computed: it waits for them.
    assert [double(url, x) for x in range(1, WORKERS + 1)] == [2 * x for x in range(1, WORKERS + 1)]
    wait(futures, timeout=10)
    assert sorted(started) == list(range(1, WORKERS + 1))  # each computed once
    double(url, 1)
    assert len(started) == WORKERS  # and cached


def test_a_call_the_pool_has_not_reached_is_made_by_the_page(url: str) -> None:
    release = threading.Event()
    made: list[str] = []

    @versioned(_engine)
    def value(url: str, name: str) -> str:
        made.append(name)
        if name.startswith("busy"):
            assert release.wait(10)
        return name.upper()

    busy = ahead(*(value.later(url, f"busy{i}") for i in range(WORKERS)))
    _wait_for(lambda: len(made) == WORKERS)
    queued = ahead(value.later(url, "queued"))
    assert value(url, "queued") == "QUEUED"  # not waiting for the busy pool
    release.set()
    wait([*busy, *queued], timeout=10)
    assert made.count("queued") == 1  # the pool's turn found it cached


def test_a_call_that_fails_ahead_fails_again_for_the_page(url: str) -> None:
    tries: list[int] = []

    @versioned(_engine)
    def broken(url: str) -> int:
        tries.append(1)
        raise RuntimeError("the warehouse is away")

    (future,) = ahead(broken.later(url))
    assert future.result(timeout=10) is None  # logged, not raised on the pool
    with pytest.raises(RuntimeError, match="the warehouse is away"):
        broken(url)
    assert len(tries) == 2  # a failure is not cached
