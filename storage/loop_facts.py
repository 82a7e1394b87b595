"""What the loop's scheduled check (training/lifecycle/loop.py, `make loop`) reads from the prediction log: labels
since the production model was made (and how many of them a retraining set would trust: storage/trust.py), the
feedback error rate over the recent window, and the not-a-digit share of the window against the weeks before it
(drift in what people draw).

    python -c "import db, datetime as dt; from storage.loop_facts import read; \
               from storage.trust import Trust; \
               print(read(db.Database(), dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), 7, Trust()))"

Two queries, aggregates over the recent rows and the labelled ones: a check with nothing to do costs well under
a second here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from storage.database import Database
from storage.schema import WRONG
from storage.trust import COUNT_SQL, Trust

BASELINE_WINDOWS = 4  # the not-a-digit share is compared with the four windows before the recent one


@dataclass(frozen=True)
class LoopFacts:
    new_labels: int  # labelled (with the image) since the production model was made, the rejected left out
    new_held: int  # of those, held for the operator's review (storage/trust.py)
    new_over_cap: int  # beyond one labeller's cap
    new_trusted: int  # what a retraining set takes: the count the loop's rule reads
    window_labels: int  # labelled within the recent window
    window_wrong: int  # of those, answered wrongly
    window_predictions: int
    window_flagged: int  # answered "not a digit"
    baseline_predictions: int  # the windows before
    baseline_flagged: int

    @property
    def error_rate(self) -> float | None:
        return self.window_wrong / self.window_labels if self.window_labels else None

    @property
    def not_digit_shift(self) -> float | None:
        """The window's not-a-digit share minus the baseline's (None without enough of either)."""
        if self.window_predictions < 50 or self.baseline_predictions < 50:
            return None
        return self.window_flagged / self.window_predictions - self.baseline_flagged / self.baseline_predictions


QUERY = f"""
SELECT
  count(*) FILTER (WHERE labelled AND labelled_at >= %(window)s) AS window_labels,
  count(*) FILTER (WHERE labelled AND labelled_at >= %(window)s AND ({WRONG})) AS window_wrong,
  count(*) FILTER (WHERE created_at >= %(window)s) AS window_predictions,
  count(*) FILTER (WHERE created_at >= %(window)s AND is_digit = false) AS window_flagged,
  count(*) FILTER (WHERE created_at >= %(baseline)s AND created_at < %(window)s) AS baseline_predictions,
  count(*) FILTER (WHERE created_at >= %(baseline)s AND created_at < %(window)s AND is_digit = false)
    AS baseline_flagged
FROM (SELECT *, (true_label IS NOT NULL OR labelled_not_digit) AS labelled FROM predictions
      WHERE created_at >= least(%(since)s, %(baseline)s) OR labelled_at >= least(%(since)s, %(baseline)s)) recent
"""


# Decisions that need the operator: a candidate the gate refused, a retrain refused, a check that failed.
TROUBLE = ("candidate refused by the gate", "retrain refused", "failed")
WAITING = "candidate waiting for the operator"


def record_check(database: Database, entry: dict[str, Any]) -> None:
    """One check's row in loop_checks (what /metrics reads back); DatabaseUnavailable when it cannot be written."""

    def write(cur: Any) -> None:
        database._ensure_schema_in(cur)
        cur.execute(
            "INSERT INTO loop_checks (decision, candidate_version, reasons, facts) VALUES (%s, %s, %s, %s)",
            (entry["decision"], entry.get("candidate_version"), json.dumps(entry["reasons"]),
             json.dumps(entry["facts"])),
        )  # fmt: skip

    database._bounded(lambda: database._run(write), database.read_wait())


def last_check(database: Database) -> dict[str, Any] | None:
    """The newest check: checked_at (epoch seconds), decision and candidate_version; None before the first."""

    def run(cur: Any) -> dict[str, Any] | None:
        database._ensure_schema_in(cur)
        cur.execute(
            "SELECT extract(epoch FROM checked_at)::float8 AS checked_at, decision, candidate_version "
            "FROM loop_checks ORDER BY id DESC LIMIT 1"
        )
        row = cur.fetchone()
        return dict(row) if row else None

    return database._bounded(lambda: database._run(run), database.read_wait())


def read(
    database: Database, since: dt.datetime, window_days: float, trust: Trust, now: dt.datetime | None = None
) -> LoopFacts:
    """The facts for a check at `now`, the new labels judged by `trust`; DatabaseUnavailable when the database does
    not answer."""
    now = now or dt.datetime.now(dt.timezone.utc)
    window = now - dt.timedelta(days=window_days)
    params = {"since": since, "window": window, "baseline": window - dt.timedelta(days=window_days * BASELINE_WINDOWS)}

    def run(cur: Any) -> LoopFacts:
        database._ensure_schema_in(cur)
        cur.execute(QUERY, params)
        window = {key: int(value) for key, value in dict(cur.fetchone()).items()}
        cur.execute(COUNT_SQL, {**trust.params(), "since": since})
        labels = {f"new_{key}": int(value) for key, value in dict(cur.fetchone()).items()}
        return LoopFacts(**labels, **window)

    return database._bounded(lambda: database._run(run), database.read_wait())
