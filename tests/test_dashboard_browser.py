"""A real browser on a real dashboard: `spendguard dashboard` on a free port against a warehouse
loaded by `spendguard demo`, driven by Playwright through the Debian `chromium` (`.ci/run`
installs it; never `playwright install`). Each page loads without a Streamlit exception box and
shows its title and key content; an operator releases the runaway user's switch through the
confirmation dialog. Screenshots land in tests/artifacts/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.demo.gpu import DEMO_GPU_POOL
from tests.conftest import UNDER_CI
from tests.servers import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = [  # (url path, title, text that shows the page's key content rendered)
    ("", "Overview", "Budgets this period"),
    ("unit_costs", "Unit costs", "Endpoint × model"),
    ("spend", "Spend explorer", "Estimated vs billed"),
    # Only drawn when the demo's pool has cost in the period: its allocation tables.
    ("gpu", "GPU cost", "Allocated by endpoint, model, user and team"),
    ("alerts", "Alerts & kill switches", "Alert history"),
    ("collectors", "Collectors", "Recent runs"),
]
# Generous: the machine that runs the suite may be busy; a page normally settles in seconds.
TIMEOUT_MS = 120_000
RULES = [
    {"id": "user-daily-cap", "description": "No user spends more than $50 a day",
     "metric": "cost_usd", "group_by": ["user"], "window": "day", "condition": {"above": 50},
     "severity": "critical", "actions": ["kill"], "kill_mode": "approve"},
    {"id": "monthly-budget", "metric": "cost_usd", "window": "month",
     "condition": {"above": 400}},
]  # fmt: skip


def _require(what: str, found: object) -> None:
    if found:
        return
    message = f"{what} is not installed (.ci/run installs it)"
    if UNDER_CI:
        pytest.fail(message)
    pytest.skip(message)


def _sg(config: Path, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(config), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


DASHBOARD_HOME: list[Path] = []  # where the running dashboard writes its log


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A demo-loaded warehouse, a switch the runaway user tripped, and the dashboard on it."""
    _require("chromium", CHROMIUM)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require("playwright (the test extras)", None)
    home = tmp_path_factory.mktemp("dashboard")
    DASHBOARD_HOME[:] = [home]
    config = home / "spendguard.yaml"
    config.write_text(
        json.dumps(
            {
                "database": {"url": f"sqlite:///{home / 'w.db'}"},
                "rules": RULES,
                # The pool the demo bills (it allocates with it either way): configured, so the
                # GPU page shows allocated and idle cost rather than "no gpu_pools" figures.
                "gpu_pools": [DEMO_GPU_POOL],
            }
        ),
        encoding="utf-8",
    )
    _sg(config, "demo", "--days", "3", "--out", str(home / "demo"), cwd=home)
    _sg(config, "alerts", "run", cwd=home)
    _sg(config, "kill", "add", "--user", "u-1313", "--reason", "runaway agent loop",
        "--ttl", "2h", "--by", "alice", cwd=home)  # fmt: skip
    port = free_port()
    log = (home / "dashboard.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), "dashboard", "--port", str(port)],
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (home / "dashboard.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the dashboard did not start within 60 s"
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser(dashboard: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _settled(page: Any, title: str) -> None:
    """The title is drawn and the script has finished running (no status widget spinning)."""
    page.get_by_role("heading", name=title).first.wait_for()
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    # Plotly loads lazily: wait until every chart has drawn its SVG.
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                 .every(c => c.querySelector('.main-svg'))"""
    )
    # Tables, charts and download buttons load their code lazily and stand as grey skeletons
    # until it arrives (a screenshot once showed the Alerts page's Rules table as one).
    page.wait_for_function(
        """() => ![...document.querySelectorAll('[data-testid="stSkeleton"]')]
                 .some(s => s.offsetParent !== null)"""
    )
    page.wait_for_timeout(1500)  # table canvases draw after the last delta


# The first table after the "Rules" heading (in document order) has its grid canvas.
RULES_TABLE_DRAWN = """() => {
    const heading = [...document.querySelectorAll('h1, h2, h3')]
        .find(h => h.textContent.trim() === 'Rules');
    if (!heading) return false;
    const table = [...document.querySelectorAll('[data-testid="stDataFrame"]')]
        .find(d => heading.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING);
    return !!(table && table.querySelector('[data-testid="data-grid-canvas"]'));
}"""


CASES = [(*p, "light") for p in PAGES] + [(*p, "dark") for p in PAGES if p[0] == ""]


@pytest.mark.parametrize(("path", "title", "content", "scheme"), CASES)
def test_each_page_renders_in_a_real_browser(
    dashboard: str, browser: Any, path: str, title: str, content: str, scheme: str
) -> None:
    # Tall enough to show a whole page: Streamlit scrolls inside its own container.
    context = browser.new_context(viewport={"width": 1400, "height": 2200}, color_scheme=scheme)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{dashboard}/{path}", wait_until="domcontentloaded")
        _settled(page, title)
        page.get_by_text(content).first.wait_for()
        if path == "alerts":  # the Rules section's table is drawn, not a loading skeleton
            page.wait_for_function(RULES_TABLE_DRAWN)
        page.screenshot(path=str(ARTIFACTS / f"{path or 'overview'}-{scheme}.png"))
        exceptions = page.locator('[data-testid="stException"]')
        assert exceptions.count() == 0, exceptions.first.inner_text()
    finally:
        context.close()


def test_an_operator_releases_the_runaway_switch(dashboard: str, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{dashboard}/alerts?user=u-1313", wait_until="domcontentloaded")
        _settled(page, "Alerts & kill switches")
        assert page.get_by_text("blocks user=u-1313").count() >= 1
        page.get_by_role("button", name="Release").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Release kill switch").wait_for()
        page.screenshot(path=str(ARTIFACTS / "alerts-release-dialog.png"))
        dialog.get_by_role("button", name="Yes, release").click()
        page.get_by_text("released by local user").wait_for()
        _settled(page, "Alerts & kill switches")
        page.screenshot(path=str(ARTIFACTS / "alerts-released.png"))
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()


def test_the_server_logged_no_error_nor_thread_warning(dashboard: str, browser: Any) -> None:
    """After every page above: the server's log holds no traceback, and no Streamlit warning
    that a thread (the pages' loading ahead) ran without its script context."""
    log = (DASHBOARD_HOME[0] / "dashboard.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "missing ScriptRunContext" not in log, log[-3000:]
