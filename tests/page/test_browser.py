"""The page in a real browser (Playwright + Debian's Chromium): draw, predict, label, upload, touch, phone size.

Each test drives the real app (a Streamlit server on a free port, the shipped model) against a throwaway
PostgreSQL database, and checks what landed in it. Screenshots go to test-artifacts/ (and, with
UPDATE_SCREENSHOTS=1, to .github/screenshots/ for the README).
"""

from __future__ import annotations

import io
import os
import shutil
from typing import Any

import psycopg2
import pytest
from PIL import Image, ImageDraw

from config.paths import PROJECT_DIR
from tools import browser
from tools import pg
import utils

pytestmark = pytest.mark.browser
SCREENSHOTS = PROJECT_DIR / ".github" / "screenshots"
PHONE, LAPTOP = browser.PHONE, browser.LAPTOP
DESKTOP = {"width": 1100, "height": 1000}

playwright_api = pytest.importorskip("playwright.sync_api")


def open_page(chromium: Any, url: str, viewport: dict[str, int] = DESKTOP, touch: bool = False) -> Any:
    context = chromium.new_context(viewport=viewport, has_touch=touch, is_mobile=touch)
    page = context.new_page()
    page.goto(url)
    browser.canvas_box(page)
    page.wait_for_timeout(300)  # let the canvas finish mounting
    return page


def newest_row(dsn: str) -> tuple[int, int, float, int | None, int] | None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, predicted_digit, confidence, true_label, length(image) "
            "FROM predictions ORDER BY id DESC LIMIT 1"
        )
        row = cur.fetchone()
    conn.close()
    return row


def predict(page: Any) -> str:
    page.get_by_role("button", name="Predict", exact=True).first.click()
    return browser.metric_value(page, "Prediction")


def screenshot(page: Any, name: str, whole_page: bool = True) -> None:
    """Whole page (Streamlit scrolls inside its own container, so grow the viewport to the content first), or with
    `whole_page=False` the first screenful only: what a user sees without scrolling."""
    size = page.viewport_size
    if whole_page:
        height = page.evaluate(
            "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], section, body')]"
            ".map(e => e.scrollHeight))"
        )
        page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 4000)})
    page.evaluate("() => { window.scrollTo(0, 0); document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; }); }")
    page.wait_for_timeout(400)
    browser.ARTIFACTS.mkdir(exist_ok=True)
    path = browser.ARTIFACTS / name
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / name)


@pytest.mark.parametrize("digit", [1, 7, 0])
def test_drawn_digit_is_predicted_labelled_and_stored(chromium: Any, app_url: str, app_db: str, digit: int) -> None:
    page = open_page(chromium, app_url)
    before = pg.count_rows(app_db)
    browser.mouse_strokes(page, browser.DIGITS[digit])
    assert predict(page) == str(digit)
    page.wait_for_timeout(300)
    assert pg.count_rows(app_db) == before + 1, "one prediction, one row"
    row_id, predicted, confidence, label, image_size = newest_row(app_db)  # type: ignore[misc]
    assert predicted == digit and 0.5 < confidence <= 1.0 and label is None and image_size > 50
    shown = page.get_by_text("Confidence").first.inner_text()
    assert utils.format_confidence(confidence) in shown
    page.get_by_role("button", name="Predict", exact=True).first.click()  # again, same drawing
    page.wait_for_timeout(800)
    assert pg.count_rows(app_db) == before + 1, "pressing Predict again on the same drawing logs nothing new"

    submit = page.get_by_role("button", name="Submit label")
    assert submit.is_disabled(), "nothing picked yet: nothing to submit"
    if digit == 0:  # the picker path: choose the digit, then Submit
        pick(page, 0)
        submit.click()
    else:  # the one-click path
        page.get_by_role("button", name=f"Yes, it's {digit}").click()
    page.get_by_text("Saved true label").wait_for(timeout=15_000)
    assert newest_row(app_db)[3] == digit  # type: ignore[index]
    assert pg.count_rows(app_db) == before + 1, "feedback updates the row, never adds one"
    if digit == 7:
        screenshot(page, "desktop.png")
        pick(page, 1)  # changed their mind: the same row gets the new label
        submit.click()
        page.get_by_text("wrong (predicted 7)").wait_for(timeout=15_000)
        assert newest_row(app_db)[3] == 1  # type: ignore[index]
        assert pg.count_rows(app_db) == before + 1
        page.get_by_role("radio", name="History").click()  # opening a page reruns it: the new row is there
        page.wait_for_url("**/history", timeout=15_000)  # each page has its own URL
        page.locator('[data-testid="stDataFrame"]').wait_for(timeout=15_000)
        assert page.get_by_text("No predictions yet").count() == 0
        page.go_back()  # the browser's back button returns to Draw, and the page bar follows
        page.get_by_role("button", name="Predict", exact=True).wait_for(timeout=15_000)
        page.wait_for_function(
            "() => document.querySelector('[role=radio][aria-checked=true]')?.innerText.includes('Draw')"
        )
    if digit == 1:  # Clear after a prediction: an empty canvas, no result, the hint again
        page.get_by_role("button", name="Clear").click()
        page.get_by_text("Draw a digit, then press Predict").wait_for(timeout=15_000)
        assert page.locator('[data-testid="stMetric"]').count() == 0
        assert page.get_by_role("button", name="Submit label").count() == 0
    page.context.close()


def pick(page: Any, digit: int) -> None:
    picker = page.get_by_role("radiogroup", name="No, the true digit is")
    picker.get_by_role("radio", name=str(digit), exact=True).click()
    assert picker.get_by_role("radio", name=str(digit), exact=True).get_attribute("aria-checked") == "true"


def predict_asks_to_draw_and_writes_nothing(page: Any, app_db: str) -> None:
    before = pg.count_rows(app_db)
    page.get_by_role("button", name="Predict", exact=True).first.click()
    page.get_by_text("Draw a digit first").wait_for(timeout=15_000)
    assert pg.count_rows(app_db) == before


def test_empty_canvas_shows_the_message_and_writes_nothing(chromium: Any, app_url: str, app_db: str) -> None:
    page = open_page(chromium, app_url)
    assert page.get_by_text("Draw a digit, then press Predict").is_visible()
    assert page.get_by_role("button", name="Submit label").count() == 0, "no feedback without a prediction"
    predict_asks_to_draw_and_writes_nothing(page, app_db)
    page.context.close()


def test_clear_empties_the_canvas(chromium: Any, app_url: str, app_db: str) -> None:
    page = open_page(chromium, app_url)
    browser.mouse_strokes(page, browser.DIGITS[1])
    page.get_by_role("button", name="Clear").click()
    page.wait_for_timeout(800)
    predict_asks_to_draw_and_writes_nothing(page, app_db)
    page.context.close()


def test_uploaded_png_goes_through_the_same_flow(chromium: Any, app_url: str, app_db: str) -> None:
    image = Image.new("RGB", (240, 240), "white")
    ImageDraw.Draw(image).line([(60, 50), (180, 50), (110, 200)], fill="black", width=18)  # a "7" in ink
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    page = open_page(chromium, app_url, viewport=LAPTOP)  # 1280x800: the answer in the first screenful
    page.get_by_role("radio", name="Upload").click()
    page.locator("input[type=file]").set_input_files(
        files=[{"name": "seven.png", "mimeType": "image/png", "buffer": buffer.getvalue()}]
    )
    page.get_by_role("button", name="Predict", exact=True).last.click()
    page.wait_for_timeout(300)
    assert browser.metric_value(page, "Prediction") == "7"
    box = page.locator('[data-testid="stMetric"]').first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= page.viewport_size["height"], "the answer, unscrolled"
    assert newest_row(app_db)[1] == 7  # type: ignore[index]
    page.context.close()


# ----------------------------------------------------------------------------------------------------------------
# Issue 7: strokes that start in the canvas's top-right band, with no hover first


def test_touch_stroke_starting_in_the_top_right_band_registers(chromium: Any, app_url: str, app_db: str) -> None:
    page = open_page(chromium, app_url, viewport=PHONE, touch=True)
    browser.touch_strokes(page, browser.DIGITS[5])  # its top bar starts at x=225, y=14
    assert predict(page) == "5", "the top bar of the 5 was lost"
    assert newest_row(app_db)[1] == 5  # type: ignore[index]
    screenshot(page, "phone.png")
    page.context.close()


def test_mouse_stroke_starting_in_the_top_right_band_registers(chromium: Any, app_url: str) -> None:
    page = open_page(chromium, app_url)
    browser.mouse_strokes(page, browser.DIGITS[5])
    assert predict(page) == "5", "the top bar of the 5 was lost"
    page.context.close()


def test_phone_viewport_fits_without_horizontal_scrolling(chromium: Any, app_url: str) -> None:
    page = open_page(chromium, app_url, viewport=PHONE, touch=True)
    box = browser.canvas_box(page)
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    browser.touch_strokes(page, browser.DIGITS[1])
    predict(page)
    overflow = page.evaluate(  # on screen only: the collapsed page menu waits off-screen, left of the viewport
        "() => [...document.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1"
        " && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)"
        " && e.getBoundingClientRect().right > 0).map(e => e.className).slice(0, 5)"
    )
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert overflow == [], f"horizontally scrolling elements: {overflow}"
    for name in ("Predict", "Yes, it's 1", "Submit label"):
        button = page.get_by_role("button", name=name, exact=True).first
        button.scroll_into_view_if_needed()
        b = button.bounding_box()
        assert b is not None and b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"], name
    page.context.close()


@pytest.mark.parametrize(
    ("name", "viewport"), [("A", LAPTOP), ("H", PHONE), ("star", LAPTOP)], ids=["A-laptop", "H-phone", "star-laptop"]
)
def test_a_drawn_letter_or_doodle_is_called_not_a_digit_and_its_row_says_so(
    chromium: Any, app_url: str, app_db: str, name: str, viewport: dict[str, int]
) -> None:
    phone = viewport == PHONE
    page = open_page(chromium, app_url, viewport=viewport, touch=phone)
    (browser.touch_strokes if phone else browser.mouse_strokes)(page, browser.NOT_DIGITS[name])
    assert predict(page) == "This doesn't look like a digit"
    guess = page.get_by_text("Best guess").first
    guess.wait_for(timeout=15_000)
    for element in (page.locator('[data-testid="stMetric"]').first, guess):  # said where people look, unscrolled
        box = element.bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], box
    cut = page.evaluate(  # the whole sentence, not "This doesn't look like a …"
        "() => [...document.querySelectorAll('[data-testid=stMetricValue], [data-testid=stMetricValue] *')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.outerHTML.slice(0, 80))"
    )
    assert cut == [], cut
    if name != "star":
        screenshot(page, f"not-a-digit-{'phone' if phone else 'laptop'}.png", whole_page=False)
    with psycopg2.connect(app_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, is_digit, not_digit_score FROM predictions ORDER BY id DESC LIMIT 1")
        row_id, is_digit, score = cur.fetchone()  # type: ignore[misc]
    conn.close()
    assert is_digit is False and score > 0.5
    page.get_by_role("button", name="Right, it's not a digit").click()
    page.get_by_text("Saved not a digit").wait_for(timeout=15_000)
    with psycopg2.connect(app_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT labelled_not_digit, true_label FROM predictions WHERE id = %s", (row_id,))
        assert cur.fetchone() == (True, None)
    conn.close()
    if name == "A":
        page.get_by_role("radio", name="History").click()
        # The grid is drawn on a canvas; its accessible twin holds the cells' text (the row: model and user agree).
        page.locator("[role=gridcell]", has_text="model + user").first.wait_for(state="attached", timeout=15_000)
    page.context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_answer_and_confidence_are_in_the_first_screenful(
    chromium: Any, app_url: str, viewport: dict[str, int]
) -> None:
    phone = viewport == PHONE
    page = open_page(chromium, app_url, viewport=viewport, touch=phone)
    (browser.touch_strokes if phone else browser.mouse_strokes)(page, browser.DIGITS[7])
    assert predict(page) == "7"
    page.get_by_text("Confidence").first.wait_for()
    for element in (
        page.locator("canvas.upper-canvas").first,
        page.get_by_role("button", name="Predict", exact=True).first,
        page.locator('[data-testid="stMetric"]').first,
        page.get_by_text("Confidence").first,
    ):
        box = element.bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], box
    if not phone:  # on a laptop the feedback too: confirm, or pick the true digit and submit, without scrolling
        for element in (
            page.get_by_role("button", name="Yes, it's 7"),
            page.get_by_role("radio", name="Not a digit"),
            page.get_by_role("button", name="Submit label"),
        ):
            box = element.bounding_box()
            assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], box
    browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(browser.ARTIFACTS / f"first-screenful-{viewport['width']}x{viewport['height']}.png"))
    page.context.close()


def test_the_true_digit_is_one_radio_group_the_arrow_keys_move_through(chromium: Any, app_url: str) -> None:
    page = open_page(chromium, app_url, viewport=LAPTOP)
    browser.mouse_strokes(page, browser.DIGITS[7])
    assert predict(page) == "7"
    group = page.get_by_role("radiogroup", name="No, the true digit is")
    radios = group.get_by_role("radio")
    radios.first.wait_for()
    assert radios.count() == 11
    stops = [radios.nth(n).get_attribute("tabindex") for n in range(11)]
    assert stops.count("0") == 1, f"one Tab stop for the group: {stops}"
    radios.first.focus()
    for key in ("ArrowRight", "ArrowRight", "ArrowLeft", "ArrowDown", "ArrowDown"):
        page.keyboard.press(key)
    checked = group.get_by_role("radio", checked=True)
    assert checked.count() == 1 and checked.inner_text() == "3"
    assert checked.evaluate("e => e.getRootNode().activeElement === e"), "focus moves with the choice"
    page.keyboard.press("End")
    assert group.get_by_role("radio", checked=True).inner_text() == "Not a digit"
    assert page.get_by_role("button", name="Submit label").is_enabled()
    page.context.close()
