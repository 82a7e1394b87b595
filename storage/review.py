"""The operator's review of held labels (storage/trust.py says which are held), and the loop's count of new labels
by what a retraining set would do with them.

    python -c "import db; from storage import review, trust; \
               print(review.held_labels(db.Database(), trust.Trust.from_settings()))"
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from storage.database import Database
from storage.trust import COUNT_SQL, HELD_SQL, Trust

REVIEWS = ("accepted", "rejected")


@dataclass(frozen=True)
class LabelCounts:
    labels: int  # labelled since, the rejected left out
    held: int  # waiting for the operator's review
    over_cap: int  # beyond one labeller's newest MAX_LABELS_PER_CLIENT
    trusted: int  # what a retraining set would take


def count_since(database: Database, trust: Trust, since: dt.datetime) -> LabelCounts:
    """The labels given since `since`, by what a retraining set would do with them."""

    def run(cur: Any) -> LabelCounts:
        cur.execute(COUNT_SQL, {**trust.params(), "since": since})
        return LabelCounts(**{key: int(value) for key, value in dict(cur.fetchone()).items()})

    return database.transact(run)


def held_labels(database: Database, trust: Trust, limit: int = 20) -> list[dict[str, Any]]:
    """The newest held labels, for the operator's review: id, times, the answer and its confidence, the label
    (`answer`, -1 for "not a digit"), the labeller and the image the model saw (PNG bytes)."""

    def run(cur: Any) -> list[dict[str, Any]]:
        cur.execute(HELD_SQL, {**trust.params(), "limit": limit})
        return [{**row, "image": bytes(row["image"])} for row in cur.fetchall()]

    return database.transact(run)


def review_label(database: Database, prediction_id: int, review: str) -> bool:
    """The operator's decision on a held label: "accepted" (trained on) or "rejected" (never). False when the row
    has no label (any more). A new label on the row clears the decision (storage/schema.LABEL_SQL)."""
    if review not in REVIEWS:
        raise ValueError(f"review must be one of {', '.join(REVIEWS)}.")

    def run(cur: Any) -> bool:
        cur.execute(
            "UPDATE predictions SET label_review = %s WHERE id = %s "
            "AND (true_label IS NOT NULL OR labelled_not_digit OR true_number IS NOT NULL)",
            (review, prediction_id),
        )
        return bool(cur.rowcount)

    return database.transact(run, database.write_timeout)
