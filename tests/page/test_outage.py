"""Database outages in a real browser (Chromium, 1280x800): a stopped database, then one that hangs (SIGSTOP).

The app runs against a private PostgreSQL server of its own that the test stops, starts, freezes and thaws. What a
user must see: every prediction answered with a warning next to it while the database is away, no stale warning once
it is back, and nothing lost or doubled in the table afterwards.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tools import browser
from tools import pg

pytestmark = pytest.mark.browser
LAPTOP = browser.LAPTOP
SAVED_LOCALLY = "saved locally"
# A frozen server answers nothing, ever: "answered" means the app did not wait for it. Generous, so that a busy CI
# machine does not fail the test; the measured times are printed.
ANSWER_SECONDS = 10

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[pg.PrivateServer]:
    private = pg.PrivateServer(tmp_path / "pgdata")
    yield private
    private.stop()


@pytest.fixture
def page(server: pg.PrivateServer, tmp_path: Path) -> Iterator[Any]:
    path = browser.chromium_path()
    if path is None:
        pytest.skip("Chromium not installed (apt-get install chromium)")
    env = {
        "DATABASE_URL": server.dsn,
        "SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        "MODEL_PATH": "",
        "DB_WRITE_TIMEOUT": "1",
        "DB_CONNECT_TIMEOUT": "1",
    }
    with browser.running_app(env) as url, playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=browser.CHROMIUM_ARGS)
        tab = chromium.new_context(viewport=LAPTOP).new_page()
        tab.goto(url)
        browser.canvas_box(tab)
        tab.wait_for_timeout(300)
        yield tab
        chromium.close()


def rows(dsn: str) -> list[tuple[int, int | None]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT predicted_digit, true_label FROM predictions ORDER BY id")
        found = cur.fetchall()
    conn.close()
    return found


def in_first_screenful(locator: Any) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"]


def predict(page: Any, digit: int) -> float:
    """Draw `digit`, press Predict; seconds until the answer shows (it must be `digit`)."""
    browser.mouse_strokes(page, browser.DIGITS[digit])
    started = time.monotonic()
    page.get_by_role("button", name="Predict", exact=True).first.click()
    assert browser.metric_value(page, "Prediction", timeout=ANSWER_SECONDS * 1000) == str(digit)
    return time.monotonic() - started


def label_yes(page: Any, digit: int) -> None:
    page.get_by_role("button", name=f"Yes, it's {digit}").click()
    page.get_by_text("Thanks! Saved true label").wait_for(timeout=ANSWER_SECONDS * 1000)


def clear(page: Any) -> float:
    started = time.monotonic()
    page.get_by_role("button", name="Clear").click()
    page.locator('[data-testid="stMetric"]').first.wait_for(state="detached", timeout=ANSWER_SECONDS * 1000)
    browser.canvas_box(page)
    page.wait_for_timeout(300)
    return time.monotonic() - started


def wait_for_rows(dsn: str, expected: list[tuple[int, int | None]], seconds: float = 30) -> list[Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = rows(dsn)
        except psycopg2.OperationalError:
            found = []
        if found == expected:
            return found
        time.sleep(0.3)
    return rows(dsn)


def test_stopped_database_warns_next_to_the_answer_and_nothing_stale_remains(
    page: Any, server: pg.PrivateServer
) -> None:
    predict(page, 1)
    assert page.get_by_text(SAVED_LOCALLY).count() == 0
    label_yes(page, 1)
    clear(page)

    server.stop()
    predict(page, 7)
    warning = page.get_by_text(SAVED_LOCALLY).first
    warning.wait_for(timeout=5_000)
    assert in_first_screenful(warning), "the warning must be visible without scrolling at 1280x800"
    assert in_first_screenful(page.locator('[data-testid="stMetric"]').first)
    browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(browser.ARTIFACTS / "outage-1280x800.png"))
    label_yes(page, 7)
    assert SAVED_LOCALLY in page.get_by_text("Thanks! Saved true label").first.inner_text()
    clear(page)

    server.start()
    assert wait_for_rows(server.dsn, [(1, 1), (7, 7)]) == [(1, 1), (7, 7)], "replayed in the background"
    predict(page, 0)
    label_yes(page, 0)
    assert page.get_by_text(SAVED_LOCALLY).count() == 0, "no stale warning once the database is back"
    assert page.get_by_text("unreachable").count() == 0
    assert wait_for_rows(server.dsn, [(1, 1), (7, 7), (0, 0)]) == [(1, 1), (7, 7), (0, 0)]


def test_hung_database_never_freezes_the_page_and_nothing_is_lost_or_doubled(
    page: Any, server: pg.PrivateServer
) -> None:
    predict(page, 1)
    label_yes(page, 1)
    clear(page)

    frozen = server.freeze()
    try:
        answers, clears = [], []
        for digit in (7, 0):
            answers.append(predict(page, digit))
            warning = page.get_by_text(SAVED_LOCALLY).first
            warning.wait_for(timeout=ANSWER_SECONDS * 1000)
            page.screenshot(path=str(browser.ARTIFACTS / f"hung-{digit}-1280x800.png"))
            assert in_first_screenful(warning)
            label_yes(page, digit)
            clears.append(clear(page))
        print(f"hung database: answers in {answers} s, Clear in {clears} s")
    finally:
        thawed = dt.datetime.now(dt.timezone.utc)
        server.thaw(frozen)
    expected: list[tuple[int, int | None]] = [(1, 1), (7, 7), (0, 0)]
    assert wait_for_rows(server.dsn, expected) == expected, "each prediction exactly once, with its label"
    with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT predicted_digit, created_at FROM predictions ORDER BY created_at, id")
        by_time = cur.fetchall()
    conn.close()
    assert [digit for digit, _ in by_time] == [1, 7, 0], "stored in the order the page showed them"
    assert all(at < thawed for _, at in by_time), "each row keeps the time its answer was shown, not the thaw's"
