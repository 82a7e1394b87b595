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
from storage.schema import RIGHT, WRONG
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
        cur.execute(
            "INSERT INTO loop_checks (decision, candidate_version, reasons, facts) VALUES (%s, %s, %s, %s)",
            (entry["decision"], entry.get("candidate_version"), json.dumps(entry["reasons"]),
             json.dumps(entry["facts"])),
        )  # fmt: skip

    database.transact(write)


def last_check(database: Database) -> dict[str, Any] | None:
    """The newest check: checked_at (epoch seconds), decision, candidate_version and reasons; None before the first."""

    def run(cur: Any) -> dict[str, Any] | None:
        cur.execute(
            "SELECT extract(epoch FROM checked_at)::float8 AS checked_at, decision, candidate_version, reasons "
            "FROM loop_checks ORDER BY id DESC LIMIT 1"
        )
        row = cur.fetchone()
        return dict(row) if row else None

    return database.transact(run)


def read(
    database: Database, since: dt.datetime, window_days: float, trust: Trust, now: dt.datetime | None = None
) -> LoopFacts:
    """The facts for a check at `now`, the new labels judged by `trust`; DatabaseUnavailable when the database does
    not answer."""
    now = now or dt.datetime.now(dt.timezone.utc)
    window = now - dt.timedelta(days=window_days)
    params = {"since": since, "window": window, "baseline": window - dt.timedelta(days=window_days * BASELINE_WINDOWS)}

    def run(cur: Any) -> LoopFacts:
        cur.execute(QUERY, params)
        window = {key: int(value) for key, value in dict(cur.fetchone()).items()}
        cur.execute(COUNT_SQL, {**trust.params(), "since": since})
        labels = {f"new_{key}": int(value) for key, value in dict(cur.fetchone()).items()}
        return LoopFacts(**labels, **window)

    return database.transact(run)


WEEKLY_SQL = f"""
SELECT date_trunc('week', created_at) AS week, count(*) AS predictions,
  count(*) FILTER (WHERE is_digit = false) AS flagged,
  count(*) FILTER (WHERE true_label IS NOT NULL OR labelled_not_digit) AS labelled,
  count(*) FILTER (WHERE {RIGHT}) AS answered_right
FROM predictions WHERE created_at >= %(since)s GROUP BY 1 ORDER BY 1
"""
VERSIONS_SQL = f"""
SELECT model_version, min(created_at) AS first_seen, max(created_at) AS last_seen, count(*) AS predictions,
  count(*) FILTER (WHERE is_digit = false) AS flagged,
  count(*) FILTER (WHERE true_label IS NOT NULL OR labelled_not_digit) AS labelled,
  count(*) FILTER (WHERE {RIGHT}) AS answered_right
FROM predictions WHERE created_at >= %(since)s GROUP BY 1 ORDER BY 2
"""


def weekly(database: Database, weeks: int = 8) -> list[dict[str, Any]]:
    """The last `weeks` weeks (UTC, Monday first): predictions, answered "not a digit", labelled, answered right
    (what feedback accuracy and the not-a-digit share are made of)."""
    return _recent(database, WEEKLY_SQL, dt.timedelta(weeks=weeks))


def versions(database: Database, days: int = 180) -> list[dict[str, Any]]:
    """Each model version that answered in the last `days` days, oldest first: when it answered first and last, and
    the same counts as `weekly` (a promotion's effect: the next version's figures against the last one's)."""
    return _recent(database, VERSIONS_SQL, dt.timedelta(days=days))


def promotions(database: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The loop's checks that shipped or left a candidate, newest first, with their reasons."""

    def run(cur: Any) -> list[dict[str, Any]]:
        cur.execute(
            "SELECT checked_at, decision, candidate_version, reasons FROM loop_checks "
            "WHERE candidate_version IS NOT NULL ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [dict(row) for row in cur.fetchall()]

    return database.transact(run)


def _recent(database: Database, sql: str, span: dt.timedelta) -> list[dict[str, Any]]:
    since = dt.datetime.now(dt.timezone.utc) - span

    def run(cur: Any) -> list[dict[str, Any]]:
        cur.execute(sql, {"since": since})
        return [dict(row) for row in cur.fetchall()]

    return database.transact(run)
