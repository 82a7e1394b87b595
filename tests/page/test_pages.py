"""History and Stats in real Chromium: opened by their address on a phone they keep the compact title and the page
bar on one row, and axe-core finds no serious or critical violation on them, on a laptop and a phone.

    pytest tests/page/test_pages.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from config.paths import PROJECT_DIR
import db
from tools import browser

pytestmark = pytest.mark.browser
PHONE, LAPTOP = browser.PHONE, browser.LAPTOP
PAGE_NAMES = ("Draw", "Upload", "History", "Stats")
SERIOUS = ("serious", "critical")
SCREENSHOTS = PROJECT_DIR / ".github" / "screenshots"

axe_api = pytest.importorskip("axe_playwright_python.sync_playwright")


@pytest.fixture(scope="module")
def app_url(app_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = db.Database(app_db)
    database.init_db()
    database.set_true_label(database.log_prediction(1, 0.9, [0.1] * 10, None, "v", 2.0, True, 0.01), 1)
    database.set_true_label(database.log_prediction(0, 0.97, [0.1] * 10, None, "v", 3.0, True, 0.02), db.NOT_A_DIGIT)
    database.log_prediction(4, 0.6, [0.1] * 10, None, "v", 2.5, False, 0.95)
    database.close()
    spool = tmp_path_factory.mktemp("spool") / "spool.jsonl"
    with browser.running_app({"DATABASE_URL": app_db, "SPOOL_PATH": str(spool), "MODEL_PATH": ""}) as url:
        yield url


def opened_by_address(chromium: Any, url: str, viewport: dict[str, int], scheme: str = "light") -> Any:
    phone = viewport["width"] < 640
    context = chromium.new_context(viewport=viewport, has_touch=phone, is_mobile=phone, color_scheme=scheme)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("radio", name="Stats").first.wait_for(timeout=30_000)  # the page bar is there
    page.wait_for_timeout(1_500)  # charts and tables finish rendering
    return page


def serious_violations(page: Any) -> list[tuple[str, str, str]]:
    """axe-core's serious and critical findings on the page as it stands: (rule, impact, the first element)."""
    violations = axe_api.Axe().run(page).response["violations"]
    return [(v["id"], v["impact"], v["nodes"][0]["html"][:120]) for v in violations if v["impact"] in SERIOUS]


@pytest.mark.parametrize("path", ["/history", "/stats"])
def test_a_page_opened_by_its_address_keeps_the_phone_layout(chromium: Any, app_url: str, path: str) -> None:
    page = opened_by_address(chromium, app_url + path, PHONE)
    title = page.locator("h1").first.bounding_box()
    assert title is not None and title["height"] <= 60, f"a compact, one-line title: {title}"
    tops = {round(page.get_by_role("radio", name=n).first.bounding_box()["y"]) for n in PAGE_NAMES}
    assert len(tops) == 1, f"the page bar on one row: {tops}"
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
@pytest.mark.parametrize("path", ["/history", "/stats"])
def test_no_serious_accessibility_violations(
    chromium: Any, app_url: str, path: str, viewport: dict[str, int], scheme: str
) -> None:
    page = opened_by_address(chromium, app_url + path, viewport, scheme)
    assert serious_violations(page) == []
    page.context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_page_follows_a_dark_preference_and_still_reads_the_drawing(
    chromium: Any, app_url: str, viewport: dict[str, int]
) -> None:
    phone = viewport["width"] < 640
    context = chromium.new_context(viewport=viewport, has_touch=phone, is_mobile=phone, color_scheme="dark")
    page = context.new_page()
    page.goto(app_url)
    browser.canvas_box(page)
    page.wait_for_timeout(300)  # let the canvas finish mounting
    background = page.evaluate("() => getComputedStyle(document.querySelector('.stApp')).backgroundColor")
    channels = [int(c) for c in background[background.index("(") + 1 : background.index(")")].split(",")[:3]]
    assert max(channels) < 80, f"a dark page, not {background}"
    (browser.touch_strokes if phone else browser.mouse_strokes)(page, browser.DIGITS[7])
    page.get_by_role("button", name="Predict", exact=True).first.click()
    assert browser.metric_value(page, "Prediction") == "7", "white strokes on black, whatever the theme"
    if os.environ.get("UPDATE_SCREENSHOTS"):  # the README's dark screenshots: the first screenful
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOTS / f"dark-{'phone' if phone else 'laptop'}.png"))
    assert serious_violations(page) == []
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_draw_with_an_answer_and_upload_have_no_serious_violations(
    chromium: Any, app_url: str, viewport: dict[str, int], scheme: str
) -> None:
    phone = viewport["width"] < 640
    context = chromium.new_context(viewport=viewport, has_touch=phone, is_mobile=phone, color_scheme=scheme)
    page = context.new_page()
    page.goto(app_url)
    browser.canvas_box(page)
    page.wait_for_timeout(300)
    (browser.touch_strokes if phone else browser.mouse_strokes)(page, browser.NOT_DIGITS["A"])
    page.get_by_role("button", name="Predict", exact=True).first.click()
    assert browser.metric_value(page, "Prediction") == "This doesn't look like a digit"
    page.get_by_text("Was it right?").wait_for(timeout=15_000)
    assert serious_violations(page) == [], "Draw, with an answer and the feedback controls"
    page.goto(app_url + "/upload")
    page.get_by_text("A photo or scan of one handwritten digit").wait_for(timeout=30_000)
    assert serious_violations(page) == [], "Upload"
    context.close()


def test_on_a_phone_the_table_s_toolbar_covers_no_control(chromium: Any, app_url: str) -> None:
    context = chromium.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(app_url)
    browser.canvas_box(page)
    page.wait_for_timeout(300)
    browser.touch_strokes(page, browser.DIGITS[7])
    page.get_by_role("button", name="Predict", exact=True).first.click()
    assert browser.metric_value(page, "Prediction") == "7"
    page.get_by_role("radio", name="History").click()
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(timeout=30_000)
    table.tap()  # the toolbar shows on touch
    toolbar = page.locator('[data-testid="stElementToolbar"]').first
    toolbar.wait_for(timeout=10_000)
    bar = toolbar.bounding_box()
    assert bar is not None
    selects = page.locator('[data-testid="stSelectbox"]')
    for n in range(selects.count()):
        box = selects.nth(n).bounding_box()
        assert box is not None
        apart = bar["y"] >= box["y"] + box["height"] or box["y"] >= bar["y"] + bar["height"]
        assert apart or bar["x"] >= box["x"] + box["width"], f"the toolbar {bar} covers a selector {box}"
    context.close()
