"""Loading ahead: a page's independent queries run side by side, not one after the other.

A page draws from top to bottom, and each cached loader it calls on a miss waits for its
query: ten queries of a tenth of a second are a second. As soon as a rerun knows what it will
ask (the selection, the page's own controls), it hands those calls to `ahead`: two threads
start on them at once, in the order given. The page then calls the same loaders as before, in
its own order, and each call finds its result in the cache, or waits on Streamlit's compute
lock for the one still running (a value is never computed twice), or, when no thread has got
to it yet, computes it itself. Callers put the slowest calls first: the threads start on
them while the page makes the quick ones it reaches first. SQLite and PostgreSQL both run the
queries of separate connections at the same time, and the Python driver lets go of the
interpreter meanwhile.

The calls come from `Versioned.later` (`app.dashboard.versions`): keyed by the rerun's data
version, without a spinner. A call that fails here is only logged: the page makes it again and
shows its error. Calls of a rerun that was left (a new filter picked) still finish, into the
cache, and are not waited for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("spendguard.dashboard")

# Two cores on the machine the targets are set on; the page's own thread makes a third.
WORKERS = 2
_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="spendguard-ahead")


def ahead(*calls: Callable[[], object]) -> list[Future[None]]:
    """Start `calls` on the pool, in their order; the futures (they never raise)."""
    return [_pool.submit(_run, call) for call in calls]


def _run(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:  # the page calls it again and shows the error
        log.debug("loading ahead failed; the page will load it itself", exc_info=True)
