"""A number on the page, in a real browser (Playwright + Debian's Chromium): "Number: 17" with each digit boxed, the
feedback in the first screenful on a laptop and a phone (light and dark), a digit fixed in its picker or the number
typed whole, each landing on the one row the number made."""

from __future__ import annotations

from typing import Any

import pytest

from tools import browser
from tools import pg

pytestmark = pytest.mark.browser
PHONE, LAPTOP = browser.PHONE, browser.LAPTOP

playwright_api = pytest.importorskip("playwright.sync_api")


def newest(dsn: str) -> tuple[Any, ...]:
    sql = "SELECT id, jsonb_array_length(digits), true_number, length(image) FROM predictions ORDER BY id DESC LIMIT 1"
    return pg.query(dsn, sql)[0]


def unscrolled(element: Any, viewport: dict[str, int]) -> bool:
    box = element.bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"]


@pytest.mark.parametrize(
    ("viewport", "scheme"), [(LAPTOP, "light"), (PHONE, "dark")], ids=["laptop-light", "phone-dark"]
)
def test_a_number_is_read_boxed_and_corrected_on_its_one_row(
    chromium: Any, app_url: str, app_db: str, viewport: dict[str, int], scheme: str
) -> None:
    phone = viewport == PHONE
    context = chromium.new_context(viewport=viewport, has_touch=phone, is_mobile=phone, color_scheme=scheme)
    page = context.new_page()
    page.goto(app_url)
    browser.canvas_box(page)
    page.wait_for_timeout(300)
    before = pg.count_rows(app_db)
    (browser.touch_strokes if phone else browser.mouse_strokes)(page, browser.number_strokes("17"))
    page.get_by_role("button", name="Predict", exact=True).first.click()
    assert browser.metric_value(page, "Prediction") == "Number: 17"
    picture = page.get_by_role("img", name="Your drawing, each digit boxed with its confidence: Number: 17")
    yes = page.get_by_role("button", name="Yes, it's 17")
    yes.wait_for(timeout=15_000)
    typed = page.get_by_role("textbox", name="No, it is")
    save = page.get_by_role("button", name="Save number")
    first_screenful = [page.locator('[data-testid="stMetric"]').first, picture, yes]
    first_screenful += [] if phone else [typed, save, page.get_by_role("combobox", name="Digit 2")]
    assert all(unscrolled(element, viewport) for element in first_screenful)
    browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(browser.ARTIFACTS / f"number-{'phone' if phone else 'laptop'}-{scheme}.png"))
    row_id, parts, label, image_size = newest(app_db)
    assert (parts, label) == (2, None) and image_size > 50 and pg.count_rows(app_db) == before + 1, "one row"

    page.get_by_role("combobox", name="Digit 2").select_option("1")  # one digit fixed: the rest as read
    page.get_by_text("Saved 11 for").wait_for(timeout=15_000)
    assert newest(app_db)[:3] == (row_id, 2, "11")
    typed.fill("171")  # the number typed whole
    save.click()
    page.get_by_text("Saved 171 for").wait_for(timeout=15_000)
    assert page.get_by_text("wrong (read 17)").count() == 1
    assert newest(app_db)[:3] == (row_id, 2, "171") and pg.count_rows(app_db) == before + 1
    yes.click()
    page.get_by_text(": correct").wait_for(timeout=15_000)
    assert newest(app_db)[2] == "17"
    typed.fill("1x")  # refused in the browser, with a reason; nothing sent
    save.click()
    page.get_by_role("alert").filter(has_text="digits 0-9").wait_for(timeout=5_000)
    assert newest(app_db)[2] == "17"
    context.close()
