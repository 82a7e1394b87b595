"""Headless page tests with streamlit.testing.v1.AppTest (no browser): flows, feedback, failures, history, stats."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from config.paths import PROJECT_DIR
import db
from access import limits
from tools import pg
import utils
from views import stats as stats_view

ROOT = PROJECT_DIR


def rows(dsn: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, predicted_digit, true_label FROM predictions ORDER BY id")
        found = cur.fetchall()
    conn.close()
    return found


def sign_in(at: AppTest, password: str = "") -> AppTest:
    """Sign in as the operator on History (the password field and the Sign in button)."""
    at.text_input(key="operator-password").input(password or os.environ["OPERATOR_PASSWORD"])
    return next(b for b in at.button if b.label == "Sign in").click().run()


def pages(at: AppTest) -> dict[str, str]:
    """The st.navigation pages the last run registered: title -> page hash."""
    return {info["page_name"]: page_hash for page_hash, info in at._registered_pages.items()}


def open_page(at: AppTest, title: str) -> AppTest:
    """Open a page the way a user does: a click in the page bar (only the open page runs)."""
    return at.button_group(key="page").set_value(title).run()


def texts(elements: object) -> str:
    return " | ".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def test_page_renders_without_errors(page: Callable[[], AppTest]) -> None:
    at = page()
    assert not at.exception
    assert at.markdown[0].value == "# MNIST Digit Classifier"
    assert set(pages(at)) == {"Draw", "Upload", "History", "Stats"}
    assert any(b.label == "Predict" for b in at.button) and any(b.label == "Clear" for b in at.button)
    assert not at.error


def test_predict_on_an_empty_canvas_asks_to_draw_and_writes_nothing(
    page: Callable[[], AppTest], database_url: str
) -> None:
    at = page()
    next(b for b in at.button if b.label == "Predict").click().run()
    assert "Draw a digit first" in texts(at.warning)
    assert not at.exception and rows(database_url) == []


def seeded_result(database: db.Database, digit: int = 3) -> dict:
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 12:16] = 1.0
    probabilities = [0.01] * 10
    probabilities[digit] = 0.91
    prediction = utils.Prediction(digit, 0.91, probabilities, image)
    row_id = database.log_prediction(digit, 0.91, probabilities, prediction.png, "test")
    return {"id": row_id, "prediction": prediction, "png": prediction.png, "label": None}


def test_before_any_prediction_a_hint_and_no_result_panel(page: Callable[[], AppTest]) -> None:
    at = page()
    assert "Draw a digit, then press Predict" in texts(at.caption)
    components = [c.proto.component_name for c in at.get("bidi_component")]
    assert "mnist_result_panel" not in components, "no feedback controls without a prediction"
    assert not at.metric and not at.exception


def test_a_result_shows_the_prediction_fills_the_panel_and_is_logged_once(
    page: Callable[[], AppTest], database: db.Database, database_url: str
) -> None:
    """The result of a Predict (seeded in the session): shown, logged once, the panel filled with it.
    Clicking the panel's feedback controls needs a browser: tests/page/test_browser.py stores labels through them."""
    at = page()
    result = seeded_result(database, digit=3)
    at.session_state["draw_result"] = {**result, "id": None}  # not logged yet: the first showing logs it
    at.run()
    assert at.metric[0].label == "Prediction" and at.metric[0].value == "3"
    logged = rows(database_url)
    assert len(logged) == 2 and logged[-1][1] == 3, "logged exactly once, when first shown"
    at.run()
    assert len(rows(database_url)) == 2, "a rerun shows the same row, it logs nothing new"
    assert "Draw a digit, then press Predict" not in texts(at.caption)
    panel = at.get("bidi_component")[-1]
    assert panel.proto.component_name == "mnist_result_panel"
    data = json.loads(panel.proto.json)
    assert data["digit"] == 3 and data["confidence"] == "91.0%" and data["label"] is None
    assert len(data["probabilities"]) == 10 and data["image"].startswith("data:image/png;base64,")
    assert not at.exception


def one_png(slant: int = 0) -> bytes:
    """A photo-like "1": dark ink on white paper (`slant`: its top this many pixels to the right)."""
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).line([(100 + slant, 20), (100, 180)], fill=0, width=16)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_flow_predicts_and_logs(page: Callable[[], AppTest], database_url: str) -> None:
    at = open_page(page(), "Upload")
    at.file_uploader(key="upload").upload("one.png", one_png(), "image/png").run()
    at.button(key="predict-upload").click().run()
    assert not at.exception
    assert any(m.label == "Prediction" and m.value == "1" for m in at.metric)
    assert [r[1] for r in rows(database_url)] == [1]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT inference_ms FROM predictions")
        (server_ms,) = cur.fetchone()  # type: ignore[misc]
    conn.close()
    assert 0 < server_ms < 10_000, "the server's time for the prediction is stored on its row"


def test_not_an_image_upload_shows_a_message(page: Callable[[], AppTest], database_url: str) -> None:
    at = open_page(page(), "Upload")
    at.file_uploader(key="upload").upload("x.png", b"definitely not a png", "image/png").run()
    assert "not a readable image" in texts(at.error)
    assert not at.exception and rows(database_url) == []


def test_history_lists_filters_and_offers_csv(page: Callable[[], AppTest], database: db.Database) -> None:
    for digit in (1, 1, 2, 7):
        pid = database.log_prediction(digit, 0.8, [0.1] * 10, utils.to_png(np.zeros((28, 28))), "v")
        database.set_true_label(pid, digit if digit != 7 else 1)
    at = sign_in(open_page(page(), "History"))
    assert len(at.dataframe[0].value) == 4
    assert "All predictions: 4" in texts(at.markdown)
    at.selectbox(key="history_digit").set_value(1).run()
    assert list(at.dataframe[0].value["Predicted"]) == [1, 1]
    at.selectbox(key="history_digit").set_value(None).run()
    at.selectbox(key="history_correct").set_value("Incorrect").run()
    assert list(at.dataframe[0].value["Predicted"]) == [7]
    assert any("Download CSV" in str(getattr(e, "proto", "")) for e in at.get("link_button"))


def test_stats_show_totals_accuracy_and_the_model_card(page: Callable[[], AppTest], database: db.Database) -> None:
    for digit, label in [(1, 1), (2, 3)]:
        database.set_true_label(database.log_prediction(digit, 0.9), label)
    at = open_page(page(), "Stats")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Predictions"] == "2" and metrics["With feedback"] == "2"
    assert metrics["Accuracy on feedback"] == "50.0%"
    card = at.table[0].value
    assert "Test accuracy (MNIST, 10k)" in card.index
    assert card.loc["File version"].iloc[0] == utils.load_checkpoint().version


def test_a_not_a_digit_correction_counts_as_wrong_and_history_says_so(
    page: Callable[[], AppTest], database: db.Database
) -> None:
    database.set_true_label(database.log_prediction(1, 0.9, is_digit=True), 1)  # right
    database.set_true_label(database.log_prediction(0, 0.97, is_digit=True), db.NOT_A_DIGIT)  # a smiley read as 0
    database.set_true_label(database.log_prediction(4, 0.6, is_digit=False, not_digit_score=0.95), db.NOT_A_DIGIT)
    at = open_page(page(), "Stats")
    assert {m.label: m.value for m in at.metric}["Accuracy on feedback"] == "66.7%", "2 of 3 answers right"
    assert "accuracy is 100.0%" in texts(at.caption), "digits alone, said separately"
    assert list(at.table[0].value.columns) == ["Value"] and not at.exception
    table = sign_in(open_page(page(), "History")).dataframe[0].value
    assert list(table["True label"]) == ["Not a digit", "Not a digit", "1"]


def test_the_server_time_chart_marks_a_single_day() -> None:
    day = pd.DataFrame({"p50": [2.5], "p95": [4.0]}, index=pd.Index([pd.Timestamp("2026-12-03", tz="UTC")], name="Day"))
    spec = stats_view.latency_chart(day).to_dict()
    assert spec["mark"] == {"type": "line", "point": True}, "a lone day is drawn as points, not an empty axis"
    assert len(next(iter(spec["datasets"].values()))) == 2


def test_history_formats_confidence_as_the_answer_does(page: Callable[[], AppTest], database: db.Database) -> None:
    database.log_prediction(4, 0.99997)
    database.log_prediction(9, 0.5)
    table = sign_in(open_page(page(), "History")).dataframe[0].value
    assert list(table["Confidence"]) == ["50.0%", ">99.99%"]


def test_a_visitor_sees_only_their_own_predictions_and_no_export(
    page: Callable[[], AppTest], database: db.Database, database_url: str
) -> None:
    database.log_prediction(3, 0.9, image_png=utils.to_png(np.zeros((28, 28))), visitor="someone-else-" + "x" * 20)
    at = open_page(page(), "History")
    assert "Your predictions: 0" in texts(at.markdown)
    assert not at.dataframe, "another visitor's drawing is not shown"
    assert not any("Download CSV" in str(getattr(e, "proto", "")) for e in at.get("link_button"))
    at = open_page(at, "Upload")  # this session's own prediction, through the page
    at.file_uploader(key="upload").upload("one.png", one_png(), "image/png").run()
    at.button(key="predict-upload").click().run()
    at = open_page(at, "History")
    assert "Your predictions: 1" in texts(at.markdown)
    assert list(at.dataframe[0].value["Predicted"]) == [1], "only this visitor's row"
    at = sign_in(at, "wrong password!")
    assert "Wrong password" in texts(at.error) and "Your predictions: 1" in texts(at.markdown)
    at = sign_in(at)
    assert "All predictions: 2" in texts(at.markdown) and len(at.dataframe[0].value) == 2
    assert any("Download CSV" in str(getattr(e, "proto", "")) for e in at.get("link_button"))
    at = next(b for b in at.button if b.label == "Sign out").click().run()
    assert "Your predictions: 1" in texts(at.markdown)


def test_model_card_shows_the_registered_version_the_checkpoint_records(
    page: Callable[[], AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = torch.load(utils.DEFAULT_MODEL_PATH, weights_only=True)
    raw["meta"].update(registered_model="mnist-digit-classifier", model_version="7", run_id="0123456789abcdef")
    path = tmp_path / "registered.pth"
    torch.save(raw, path)
    monkeypatch.setenv("MODEL_PATH", str(path))
    card = open_page(page(), "Stats").table[0].value
    assert card.loc["Registry version"].iloc[0] == "mnist-digit-classifier v7, run 01234567"


def test_missing_model_shows_the_fix_not_a_traceback(
    page: Callable[[], AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "missing.pth"))
    at = page()
    assert not at.exception
    assert "make train" in texts(at.error) and "missing.pth" in texts(at.error)


def test_database_down_still_predicts_and_says_logging_is_delayed(
    page: Callable[[], AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    at = page()
    assert not at.exception
    assert "database is unreachable" in texts(at.warning)
    assert "History is unavailable" in texts(open_page(at, "History").warning)

    open_page(at, "Upload").file_uploader(key="upload").upload("one.png", one_png(), "image/png").run()
    at.button(key="predict-upload").click().run()
    assert any(m.label == "Prediction" and m.value == "1" for m in at.metric)
    assert "saved locally" in texts(at.warning)
    spool = (tmp_path / "app-spool.jsonl").read_text().splitlines()
    assert len(spool) == 1 and '"predicted_digit":1' in spool[0]
    assert not at.exception


def test_after_the_database_is_back_no_stale_warning_remains(
    page: Callable[[], AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = pg.PrivateServer(tmp_path / "pgdata")
    monkeypatch.setenv("DATABASE_URL", server.dsn)
    at = page()
    assert not at.warning
    server.stop()
    open_page(at, "Upload").file_uploader(key="upload").upload("one.png", one_png(), "image/png").run()
    at.button(key="predict-upload").click().run()
    assert any(m.label == "Prediction" and m.value == "1" for m in at.metric)
    assert "saved locally" in texts(at.warning)
    server.start()
    deadline = time.monotonic() + 20  # the replay runs in the background, within seconds
    while time.monotonic() < deadline and rows(server.dsn) == []:
        time.sleep(0.2)
    assert [r[1] for r in rows(server.dsn)] == [1]
    at.run()  # the next rerun, e.g. a label or the next prediction
    assert "saved locally" not in texts(at.warning) and "unreachable" not in texts(at.warning)
    server.stop()


def test_the_page_bar_opens_each_page_and_stays_on_a_reclicked_one(page: Callable[[], AppTest]) -> None:
    at = page()
    assert at.button_group(key="page").value == "Draw"
    at = open_page(at, "History")
    assert at.button_group(key="page").value == "History"
    assert any(s.label == "Predicted digit" for s in at.selectbox) and not any(b.label == "Predict" for b in at.button)
    at.button_group(key="page").set_value(None).run()  # a click on the open page would deselect it
    assert at.button_group(key="page").value == "History"
    assert any(s.label == "Predicted digit" for s in at.selectbox)
    at = open_page(at, "Draw")
    assert at.button_group(key="page").value == "Draw" and any(b.label == "Predict" for b in at.button)
    assert not at.exception


def test_a_client_over_the_predict_limit_is_told_so_and_nothing_is_written(
    page: Callable[[], AppTest], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_a_minute = limits.RateLimit(1, 60)
    monkeypatch.setattr(limits, "predictions", lambda: one_a_minute)
    at = open_page(page(), "Upload")
    at.file_uploader(key="upload").upload("one.png", one_png(), "image/png").run()
    at.button(key="predict-upload").click().run()
    assert [r[1] for r in rows(database_url)] == [1]
    seven = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(seven).line([(30, 30), (170, 30), (80, 180)], fill=0, width=16)
    buffer = io.BytesIO()
    seven.save(buffer, format="PNG")
    at.file_uploader(key="upload").upload("seven.png", buffer.getvalue(), "image/png").run()
    at.button(key="predict-upload").click().run()
    assert "Too many predictions from here: try again in" in texts(at.warning)
    assert not at.exception and [r[1] for r in rows(database_url)] == [1], "nothing written past the limit"


def test_the_page_answers_with_a_promoted_model_without_a_restart(
    page: Callable[[], AppTest], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model file replaced under a running page (as `make promote` does): the next prediction is answered by,
    and logged with, the new version; the session and the process go on."""
    from tests.serve.test_model_swap import write_model

    model = tmp_path / "model.pth"
    write_model(model, "production")
    monkeypatch.setenv("MODEL_PATH", str(model))  # after the fixture cleared it, before the page starts
    at = open_page(page(), "Upload")
    at.file_uploader(key="upload").upload("one.png", one_png(), "image/png").run()
    at.button(key="predict-upload").click().run()
    first = utils.load_checkpoint(model).version
    write_model(model, "promoted")
    promoted = utils.load_checkpoint(model).version
    at.file_uploader(key="upload").upload("another-one.png", one_png(slant=14), "image/png").run()
    at.button(key="predict-upload").click().run()
    assert not at.exception and promoted != first
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT model_version FROM predictions ORDER BY id")
        versions = [version for (version,) in cur.fetchall()]
    conn.close()
    assert versions == [first, promoted], "each prediction logged with the model that answered it"
