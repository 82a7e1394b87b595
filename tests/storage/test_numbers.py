"""A number's row (storage/schema.py, storage/records.py): one row with its parts, labelled with the number the user
wrote, each digit of it then a labelled example for retraining (storage/trust.py); History and the CSV show it, the
per-digit rollup leaves it out. On the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import db
import utils
from storage import review
from storage.trust import Trust

PNG = utils.to_png(np.zeros((28, 28)))
TRUST = Trust(per_labeller=50, hold_confidence=0.99, corroboration=5)


def part(digit: int, confidence: float, left: int) -> dict[str, Any]:
    image = utils.to_png(np.full((28, 28), digit / 10))
    probabilities = [confidence if d == digit else (1 - confidence) / 9 for d in range(10)]
    box = [left, 40, left + 60, 200]
    return {"digit": digit, "confidence": confidence, "probabilities": probabilities, "is_digit": True,
            "not_digit_score": 0.01, "box": box, "image": image}  # fmt: skip


def log_number(database: db.Database, digits: str, confidence: float = 0.9, visitor: str | None = None) -> int:
    parts = [part(int(d), confidence, 70 * i) for i, d in enumerate(digits)]
    return database.log_prediction(
        parts[0]["digit"], confidence ** len(parts), None, PNG, "v", 4.0, True, 0.01, visitor, digits=parts
    )


def test_a_number_is_one_row_with_its_parts_and_its_label(database: db.Database) -> None:
    row_id = log_number(database, "2026", visitor="visitor-1")
    assert database.set_true_label(row_id, None, "visitor-1", number="2025")
    (row,) = database.get_prediction_history(visitor="visitor-1")
    assert [p["digit"] for p in row["digits"]] == [2, 0, 2, 6] and row["digits"][3]["box"] == [210, 40, 270, 200]
    assert row["true_number"] == "2025" and row["correct"] is False
    database.set_true_label(row_id, None, "visitor-1", number="2026")
    assert database.get_prediction_history(visitor="visitor-1")[0]["correct"] is True
    stats = database.get_stats()
    assert stats["total"] == 1 and database.count_predictions() == 1, "one row"
    assert (stats["labelled"], stats["correct"]) == (4, 4), "each digit counted as a digit's answer"
    assert stats["numbers"] == {"read": 1, "digits": 4, "shown": 1, "labelled": 1, "right": 1}
    single = database.log_prediction(3, 0.9, [0.1] * 10, PNG, "v", 1.0, True, 0.01)
    database.set_true_label(single, 5)
    stats = database.get_stats()
    assert (stats["total"], stats["labelled"], stats["correct"]) == (2, 5, 4)


def test_each_digit_of_a_labelled_number_is_an_example_of_its_own(database: db.Database) -> None:
    right = log_number(database, "42")
    database.set_true_label(right, None, "a", number="42")
    wrong = log_number(database, "17", confidence=0.995)
    database.set_true_label(wrong, None, "b", number="77")  # a confident 1 called 7 by one labeller: held
    other_length = log_number(database, "305")
    database.set_true_label(other_length, None, "c", number="3055")  # parts cannot be matched to digits: none
    rows = list(database.iter_labelled(trust=TRUST))
    examples = {(row["id"], row["part"]): row for row in rows}
    assert set(examples) == {(right, 1), (right, 2), (wrong, 1), (wrong, 2)}
    assert [examples[right, 1]["true_label"], examples[right, 2]["true_label"]] == [4, 2]
    assert examples[right, 2]["image"] == utils.to_png(np.full((28, 28), 0.2)), "the part's own 28x28 input"
    assert examples[wrong, 1]["held"] and not examples[wrong, 2]["held"]
    (held,) = review.held_labels(database, TRUST)
    assert (held["id"], held["part"], held["answer"]) == (wrong, 1, 7)
    assert review.review_label(database, wrong, "accepted"), "the operator's decision reaches a number's row"
    assert not any(row["held"] for row in database.iter_labelled(trust=TRUST))


def test_a_number_label_is_checked(database: db.Database) -> None:
    row_id = log_number(database, "12")
    for bad in ("12a", "", "123456789", 12, "١٢"):
        with pytest.raises(ValueError):
            database.set_true_label(row_id, None, "a", number=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        log_number(database, "1")  # a number has at least two parts; one is a digit's row


def test_a_number_and_its_label_are_spooled_and_replayed_whole(tmp_path: Path, database_url: str) -> None:
    """The database away: the number and the number the user typed are kept on disk and land as one row."""
    down = db.Database("postgresql://nobody@127.0.0.1:1/none", spool_path=tmp_path / "spool.jsonl", connect_timeout=1)
    row_id = log_number(down, "305", visitor="visitor-2")
    assert row_id < 0 and down.set_true_label(row_id, None, "visitor-2", number="306") is False
    down._dsn = database_url  # the server "came back"
    down.close()
    assert down.flush_spool() == 0 and down.pending() == 0
    (row,) = down.get_prediction_history(visitor="visitor-2")
    assert row["number"] == "305" and row["true_number"] == "306" and row["correct"] is False
    assert [p["box"] for p in row["digits"]] == [[0, 40, 60, 200], [70, 40, 130, 200], [140, 40, 200, 200]]
    assert "image" not in row["digits"][0], "History reads the parts without their images"
    down.close()
