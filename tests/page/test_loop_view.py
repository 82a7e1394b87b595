"""The loop on the Stats page (views/loop.py), headless (AppTest): the week's feedback accuracy, the not-a-digit
share, drift, the labels since the model, the last check and the model versions; the operator's review list."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import psycopg2
from streamlit.testing.v1 import AppTest

import db
import utils
from storage.loop_facts import record_check
from tests.page.test_app import open_page, sign_in, texts

PNG = utils.to_png(np.zeros((28, 28)))


def labelled(database: db.Database, digit: int, confidence: float, label: int, by: str, version: str = "v1") -> int:
    row = database.log_prediction(digit, confidence, [0.1] * 10, PNG, version, 1.0, True, 0.01)
    database.set_true_label(row, label, by)
    return row


def test_stats_show_the_loop(page: Callable[[], AppTest], database: db.Database) -> None:
    for n in range(8):
        labelled(database, n, 0.9, n if n < 6 else 0, f"visitor-{n}", version="old")  # 6 of 8 right
    for n in range(4):
        labelled(database, n, 0.9, n, f"visitor-{n}", version="new")  # 4 of 4 right
    database.log_prediction(5, 0.4, [0.1] * 10, PNG, "new", 1.0, False, 0.9)  # "not a digit"
    record_check(database, {"decision": "not needed", "reasons": ["12 trusted new labels < 200"], "facts": {}})
    at = open_page(page(), "Stats")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Recent accuracy"] == "83.3%", "10 of 12 labelled this week"
    assert metrics["Recent not a digit"] == f"{1 / 13:.1%}"
    assert metrics["Drift"] == "–", "too few predictions in the weeks before to compare"
    assert metrics["New labels"] == "12"
    assert "Last check" in texts(at.caption) and "not needed" in texts(at.caption)
    versions = at.dataframe[0].value
    assert list(versions["Model"]) == ["old", "new"]
    assert list(versions["Feedback accuracy"]) == ["75.0%", "100.0%"], "what the promotion changed"
    assert "Labels held for review" not in texts(at.markdown), "the review list is the operator's"
    assert not at.exception


def test_the_operator_accepts_and_rejects_held_labels(
    page: Callable[[], AppTest], database: db.Database, database_url: str
) -> None:
    poison = [labelled(database, 7, 0.999, 1, "poisoner") for _ in range(2)]
    at = open_page(sign_in(open_page(page(), "History")), "Stats")
    assert "Labels held for review" in texts(at.markdown)
    assert texts(at.markdown).count("labelled **1**") == 2
    at = at.button(key=f"accepted-{poison[0]}").click().run()
    at = at.button(key=f"rejected-{poison[1]}").click().run()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, label_review FROM predictions ORDER BY id")
        assert cur.fetchall() == [(poison[0], "accepted"), (poison[1], "rejected")]
    conn.close()
    assert "None: no label contradicts" in texts(at.caption) and not at.exception
    assert "labelled **1**" not in texts(at.markdown)
