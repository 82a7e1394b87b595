"""Which labels a retraining set trusts (storage/trust.py, storage/review.py): the cap per labeller, the confident
contradictions held for review unless corroborated, and the operator's accept and reject. On the real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import db
import utils
from storage import review
from storage.trust import Trust

PNG = utils.to_png(np.zeros((28, 28)))
TRUST = Trust(per_labeller=50, hold_confidence=0.99, corroboration=5)
EPOCH = dt.datetime.fromtimestamp(0, dt.timezone.utc)


def labelled(database: db.Database, digit: int, confidence: float, label: int | str, by: str) -> int:
    row = database.log_prediction(digit, confidence, [0.1] * 10, PNG, "v", 1.0, True, 0.01)
    database.set_true_label(row, label, by)
    return row


def test_a_correction_many_labellers_agree_on_is_trusted_one_labeller_s_is_held(database: db.Database) -> None:
    """30 visitors call a confident "7" a "2" (a writing style the model misreads): trusted. One visitor calls 300
    confident sevens "1": held. Four visitors agreeing is not yet enough."""
    style = {labelled(database, 7, 0.999, 2, f"visitor-{n % 30}") for n in range(300)}
    poison = {labelled(database, 7, 0.999, 1, "poisoner") for _ in range(300)}
    few = {labelled(database, 3, 0.999, 8, f"friend-{n % 4}") for n in range(8)}
    not_digit = labelled(database, 5, 0.999, db.NOT_A_DIGIT, "someone")
    rows = {row["id"]: row for row in database.iter_labelled(trust=TRUST)}
    assert {i for i, row in rows.items() if row["held"]} == poison | few | {not_digit}
    assert style <= {i for i, row in rows.items() if not row["held"]}
    counts = review.count_since(database, TRUST, EPOCH)
    assert (counts.labels, counts.held, counts.trusted, counts.over_cap) == (609, 309, 300, 0)
    assert review.count_since(database, TRUST, dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).labels == 0


def test_the_operator_accepts_or_rejects_a_held_label(database: db.Database) -> None:
    poison = [labelled(database, 7, 0.999, 1, "poisoner") for _ in range(3)]
    listed = review.held_labels(database, TRUST, limit=2)
    assert [row["id"] for row in listed] == poison[:0:-1], "newest first, at most the limit"
    assert listed[0]["answer"] == 1 and listed[0]["predicted_digit"] == 7 and listed[0]["image"] == PNG
    assert review.review_label(database, poison[0], "accepted") and review.review_label(database, poison[1], "rejected")
    rows = {row["id"]: row for row in database.iter_labelled(trust=TRUST)}
    assert not rows[poison[0]]["held"], "accepted: trained on"
    assert poison[1] not in rows, "rejected: never trained on, never listed again"
    assert [row["id"] for row in review.held_labels(database, TRUST)] == [poison[2]]
    database.set_true_label(poison[0], 4, "poisoner")  # a new label is a new question: the review no longer holds
    assert {row["id"] for row in review.held_labels(database, TRUST)} == {poison[0], poison[2]}
    assert review.count_since(database, TRUST, EPOCH).labels == 2, "the rejected label is not counted"
    unlabelled = database.log_prediction(3, 0.9, [0.1] * 10, PNG, "v", 1.0, True, 0.01)
    assert review.review_label(database, unlabelled, "accepted") is False, "nothing to review"
    with pytest.raises(ValueError):
        review.review_label(database, poison[2], "maybe")


def test_one_labeller_s_flood_is_capped(database: db.Database) -> None:
    eager = [labelled(database, 4, 0.6, 9, "eager") for _ in range(120)]
    counts = review.count_since(database, TRUST, EPOCH)
    assert (counts.trusted, counts.over_cap, counts.held) == (50, 70, 0)
    kept = {row["id"] for row in database.iter_labelled(trust=TRUST)}
    assert kept == set(eager[-50:]), "their newest 50"
