"""The read side of the predictions log: History (one page at a time), the CSV export (streamed), Stats (from the
rollup the triggers keep, schema.py) and the labelled rows retraining reads.

    python -c "import db; print(db.Database().get_stats()['total'])"

`Reads` is a base of `db.Database`, which supplies the bounded waits and the schema check (the pool is storage.pool's);
every method here stays on `Database` (its public interface) and is tested through it. Each query's plan at a
million rows is in BENCHMARKS.md (`make bench-history`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
import psycopg2.extras

from storage.pool import Connections, DatabaseUnavailable
from storage.trust import LABELLED_SQL, Trust
from storage.records import check_digit, check_visitor
from storage.schema import HISTORY_COLUMNS, NOT_DIGIT, NUM_CLASSES, PARTS, RIGHT, WRONG

T = TypeVar("T")
NUMBERS_SQL = (
    "SELECT coalesce(sum(n), 0)::bigint AS read, coalesce(sum(n * digits), 0)::bigint AS digits, "
    "coalesce(sum(n) FILTER (WHERE shown), 0)::bigint AS shown, "
    "coalesce(sum(n) FILTER (WHERE labelled), 0)::bigint AS labelled, "
    "coalesce(sum(n) FILTER (WHERE right_whole), 0)::bigint AS right FROM number_counts"
)
MAX_PAGE = 10_000
EXPORT_BATCH = 2_000  # rows per FETCH while exporting: memory stays at one batch, whatever the table holds
EXPORT_COLUMNS = (
    "id",
    "created_at",
    "predicted_digit",
    "confidence",
    "is_digit",
    "not_digit_score",
    "true_label",
    "labelled_not_digit",
    "number",  # a number's row: the digits read, left to right (predicted_digit is its first)
    "true_number",
    "correct",
    "model_version",
    "inference_ms",
    "probabilities",
)

Cursor = tuple[dt.datetime, int]  # (created_at, id) of the last row shown: the next page starts after it


def history_filter(
    digit: int | None,
    correct: bool | None,
    not_digit: bool | None,
    before: Cursor | None,
    visitor: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (constant text, `%s` parameters) for History's filters; `visitor`: that browser's rows only.
    The predicates are written exactly as the partial indexes' (schema.py), which is what lets the planner use
    them."""
    where: list[str] = []
    params: list[Any] = []
    if visitor is not None:
        where.append("visitor = %s")
        params.append(check_visitor(visitor))
    if digit is not None:
        where.append("predicted_digit = %s")
        params.append(check_digit("digit", digit))
    if correct is True:
        where.append(f"({RIGHT})")
    elif correct is False:
        where.append(f"({WRONG})")
    if not_digit is True:
        where.append("(is_digit = false OR labelled_not_digit)")
    elif not_digit is False:
        where.append("(is_digit IS DISTINCT FROM false AND NOT labelled_not_digit)")
    if before is not None:
        created_at, row_id = before
        if not isinstance(created_at, dt.datetime) or isinstance(row_id, bool) or not isinstance(row_id, int):
            raise ValueError("before must be the (created_at, id) of a row History returned.")
        where.append("(created_at, id) < (%s, %s)")
        params += [created_at, row_id]
    return (" WHERE " + " AND ".join(where)) if where else "", params


def percentile(counts: list[tuple[int, int, float]], q: float) -> float | None:
    """The q-quantile of a latency histogram [(bucket, n, total ms)] sorted by bucket, as PostgreSQL's
    percentile_cont computes it (interpolating between the values either side of rank q * (n - 1)), each value
    taken as its bucket's mean."""
    total = sum(n for _, n, _ in counts)
    if total <= 0:
        return None
    rank = q * (total - 1)
    below = int(math.floor(rank))

    def value(index: int) -> float:
        seen = 0
        for _, n, ms in counts:
            seen += n
            if index < seen:
                return ms / n
        return counts[-1][2] / counts[-1][1]

    low = value(below)
    return low + (rank - below) * (value(min(below + 1, total - 1)) - low)


# The labelled rows a retrain may learn from. A row's labeller is who gave the label (or, on rows from before that
# was kept, the browser that made it; else the row itself). Held: the user contradicts an answer the model gave with
# at least %(hold)s confidence. Each labeller's newest %(cap)s unheld rows are kept; held rows come back, flagged.


class Reads(Connections):
    """History, export, stats and the labelled rows (`db.Database` supplies the schema check and the waits)."""

    read_wait: Callable[[], float]
    _ensure_schema_in: Callable[[Any], None]
    ensure_ready: Callable[[], None]

    def transact(self, work: Callable[[Any], T], wait: float | None = None) -> T:
        """`work(cursor)` in one transaction on the current schema (migrated first if need be), waiting at most the
        read wait (or `wait`); DatabaseUnavailable when the database does not answer in time."""

        def run(cur: Any) -> T:
            self._ensure_schema_in(cur)
            return work(cur)

        return self._bounded(lambda: self._run(run), self.read_wait() if wait is None else wait)

    def get_prediction_history(
        self,
        limit: int = 100,
        offset: int = 0,
        digit: int | None = None,
        correct: bool | None = None,
        not_digit: bool | None = None,
        before: Cursor | None = None,
        visitor: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. `digit`: the predicted digit; `correct`: labelled rows the app got right (True) or wrong
        (False); `not_digit`: rows the model or the user called "not a digit" (True) or neither (False); `visitor`:
        only the rows that browser made (None: every row, the operator's view). Pages:
        pass the last row's (created_at, id) as `before` for the next one (an index walk of one page however deep;
        `offset` also works but reads every row it skips)."""
        if not (isinstance(limit, int) and 0 < limit <= MAX_PAGE) or not (isinstance(offset, int) and offset >= 0):
            raise ValueError(f"limit must be 1-{MAX_PAGE} and offset >= 0.")
        where, params = history_filter(digit, correct, not_digit, before, visitor)
        # The column list and the filters are constants from schema.py; values only travel as parameters.
        sql = f"SELECT {HISTORY_COLUMNS} FROM predictions{where} ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s"
        params += [limit, offset]

        def read(cur: Any) -> list[dict[str, Any]]:
            # A page is a walk down one of the newest-first indexes. The planner cannot estimate
            # `true_label = predicted_digit` (it guesses a tiny share of rows; in real traffic it is a large one), and
            # on that guess it reads a deep page as a bitmap scan of every older right answer, then a sort. Without
            # bitmap scans it walks an index and stops after the page (`make bench-history` has the plans).
            cur.execute("SET LOCAL enable_bitmapscan = off")
            cur.execute(sql, params)
            rows = [dict(r) for r in cur.fetchall()]
            for r in rows:
                r["image"] = bytes(r["image"]) if r["image"] is not None else None
            return rows

        return self.transact(read)

    def export_csv(
        self, digit: int | None = None, correct: bool | None = None, not_digit: bool | None = None
    ) -> Iterator[bytes]:
        """The whole log (with History's filters) as CSV, newest first, in chunks of `EXPORT_BATCH` rows read through
        a server-side cursor on a connection of its own: any size, in constant memory, without holding a pool slot
        for the download's duration. Images are left out (they are in History, and would make the file ~10x). It never
        migrates or replays the spool (the page's handle does): before the first prediction it is just the header."""
        where, params = history_filter(digit, correct, not_digit, None)
        columns = HISTORY_COLUMNS.replace("image, ", "").replace(f"{PARTS} AS digits, ", "")
        sql = f"SELECT {columns} FROM predictions{where} ORDER BY created_at DESC, id DESC"
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        try:
            conn = self._export_connection()
        except psycopg2.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            with conn:
                with conn.cursor() as check:
                    check.execute("SELECT to_regclass('predictions') IS NOT NULL")
                    found = check.fetchone()
                    ready = bool(found and found[0])
                with conn.cursor(name="export", cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    cur.itersize = EXPORT_BATCH
                    if not ready:  # nothing logged yet, not even the table
                        yield buffer.getvalue().encode()
                        return
                    cur.execute(sql, params)
                    for n, row in enumerate(cur, start=1):
                        writer.writerow(_csv_row(row))
                        if n % EXPORT_BATCH == 0:
                            yield buffer.getvalue().encode()
                            buffer.seek(0)
                            buffer.truncate()
            yield buffer.getvalue().encode()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise DatabaseUnavailable(f"the database went away during the export: {exc}") from exc
        finally:
            conn.close()

    def count_predictions(self, visitor: str | None = None) -> int:
        """How many predictions there are (from the rollup), or how many `visitor`'s browser made."""
        if visitor is None:
            # The digit counts hold each of a number's digits: a number's row is one row.
            sql, params = (
                "SELECT (SELECT coalesce(sum(n), 0) FROM prediction_counts) "
                "- (SELECT coalesce(sum(n * (digits - 1)), 0) FROM number_counts) AS n",
                [],
            )
        else:
            sql, params = "SELECT count(*) AS n FROM predictions WHERE visitor = %s", [check_visitor(visitor)]

        def read(cur: Any) -> int:
            cur.execute(sql, params)
            return int(cur.fetchone()["n"])

        return int(self.transact(read))

    def count_labelled(self) -> int:
        """How many predictions carry a user's answer (a digit or "not a digit") and the image the model saw (what
        retraining can use)."""

        def read(cur: Any) -> int:
            cur.execute(
                "SELECT count(*) AS n FROM predictions "
                "WHERE (true_label IS NOT NULL OR labelled_not_digit) AND image IS NOT NULL"
            )
            return int(cur.fetchone()["n"])

        return self.transact(read)

    def iter_labelled(self, batch_size: int = 1000, trust: Trust | None = None) -> Iterator[dict[str, Any]]:
        """Every labelled prediction with its image, oldest first, streamed through a server-side cursor: the rows
        arrive `batch_size` at a time, so a large table never sits in memory. `true_label` is None and `not_digit`
        True where the user answered "Not a digit". `trust` (storage/trust.py): at most its cap (the newest) from any
        one labeller, and `held` True on a label held for the operator's review (not to train on blindly); the
        operator's rejected labels never come. Raises DatabaseUnavailable if the database cannot be
        reached (or drops the connection mid-stream)."""
        limits = (trust or Trust()).params()
        self.ensure_ready()
        try:
            with self._connection() as conn:
                with conn:  # a named cursor lives inside one transaction
                    with conn.cursor(name="labelled_rows", cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                        cur.itersize = batch_size
                        cur.execute(LABELLED_SQL, limits)
                        for row in cur:
                            yield {**row, "image": bytes(row["image"])}
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise DatabaseUnavailable(f"the database is unreachable: {exc}") from exc

    def feedback_totals(self) -> tuple[int, int]:
        """(labelled, answered right) over every row with feedback, "not a digit" included, from the rollup: the
        feedback accuracy the operator's dashboard shows (Stats' `feedback_accuracy`)."""

        def read(cur: Any) -> tuple[int, int]:
            cur.execute(
                "SELECT coalesce(sum(n) FILTER (WHERE answer >= 0), 0)::bigint AS labelled, coalesce(sum(n) FILTER "
                "(WHERE (answer = predicted_digit AND NOT flagged) OR (answer = %s AND flagged)), 0)::bigint AS right "
                "FROM prediction_counts",
                (NOT_DIGIT,),
            )
            row = cur.fetchone()
            return int(row["labelled"]), int(row["right"])

        return self.transact(read)

    def get_stats(self, days: int = 30) -> dict[str, Any]:
        """Totals, accuracy on digit feedback (overall and per true digit) and on all feedback ("not a digit"
        included: `feedback_accuracy`), confusion counts, "not a digit" counts (each digit of a number counted as a
        digit's answer), `numbers` {read, digits, shown, labelled, right} (numbers of several digits),
        and daily volume and server time for the last `days` days (UTC). Read from the rollup tables, so the cost
        does not grow with the predictions table (server-time percentiles: see schema.LATENCY_BUCKET)."""
        if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= 3660:
            raise ValueError("days must be a whole number from 1 to 3660.")

        def read(cur: Any) -> dict[str, Any]:
            cur.execute(
                "SELECT predicted_digit, answer, flagged, sum(n)::bigint AS n FROM prediction_counts "
                "GROUP BY 1, 2, 3 HAVING sum(n) <> 0"
            )
            cells = [dict(r) for r in cur.fetchall()]
            cur.execute(
                "SELECT day, sum(n)::bigint AS predictions, (sum(n) FILTER (WHERE answer >= 0))::bigint AS labelled, "
                "(sum(n) FILTER (WHERE (answer = predicted_digit AND NOT flagged) OR (answer = %s AND flagged)))"
                "::bigint AS correct FROM prediction_counts WHERE day > (now() AT TIME ZONE 'UTC')::date - %s "
                "GROUP BY day HAVING sum(n) <> 0 ORDER BY day",
                (NOT_DIGIT, days),
            )
            daily = [dict(r) for r in cur.fetchall()]
            cur.execute(
                "SELECT day, bucket, n, total_ms FROM prediction_latency WHERE n > 0 "
                "AND day > (now() AT TIME ZONE 'UTC')::date - %s ORDER BY day, bucket",
                (days,),
            )
            latency: dict[dt.date, list[tuple[int, int, float]]] = {}
            for r in cur.fetchall():
                latency.setdefault(r["day"], []).append((int(r["bucket"]), int(r["n"]), float(r["total_ms"])))
            cur.execute(NUMBERS_SQL)
            return {"cells": cells, "daily": daily, "latency": latency, "numbers": dict(cur.fetchone())}

        raw = self.transact(read)
        stats, numbers = summarise(raw["cells"], raw["daily"], raw["latency"]), raw["numbers"]
        # `total` counts rows: a number's digits are counted in the digit figures, the number once here.
        return {**stats, "total": stats["total"] - numbers["digits"] + numbers["read"], "numbers": numbers}


def summarise(
    cells: list[dict[str, Any]],
    daily_rows: list[dict[str, Any]],
    latency: dict[dt.date, list[tuple[int, int, float]]],
) -> dict[str, Any]:
    """Stats from the rollup's cells {predicted_digit, answer (-1 none, 0-9, 10 not a digit), flagged, n}."""
    confusion = [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)]
    right = [0] * NUM_CLASSES  # answered with the user's digit (a "not a digit" call on a digit is not right)
    total = 0
    not_digit = {"flagged": 0, "said_not_digit": 0, "agreed": 0, "missed": 0, "false_alarms": 0}
    for cell in cells:
        digit, answer, flagged, n = cell["predicted_digit"], cell["answer"], cell["flagged"], int(cell["n"])
        total += n
        not_digit["flagged"] += n if flagged else 0
        if answer == NOT_DIGIT:
            not_digit["said_not_digit"] += n
            not_digit["agreed" if flagged else "missed"] += n
        elif answer >= 0:
            confusion[answer][digit] += n  # the model's best digit, even where it said "not a digit"
            right[answer] += n if answer == digit and not flagged else 0
            not_digit["false_alarms"] += n if flagged else 0
    labelled, correct = sum(map(sum, confusion)), sum(right)
    per_digit = {}
    for d in range(NUM_CLASSES):
        n = sum(confusion[d])
        per_digit[d] = {"labelled": n, "correct": right[d], "accuracy": right[d] / n if n else None}
    daily = []
    for row in daily_rows:
        day = row["day"]
        counts = latency.get(day, [])
        daily.append(
            {
                # midnight UTC, as an aware timestamp (what date_trunc gave the page before)
                "day": dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc),
                "predictions": int(row["predictions"]),
                "labelled": int(row["labelled"] or 0),
                "correct": int(row["correct"] or 0),
                "inference_p50_ms": _round(percentile(counts, 0.5)),
                "inference_p95_ms": _round(percentile(counts, 0.95)),
            }
        )
    return {
        "total": total,
        "confusion": confusion,
        "daily": daily,
        "labelled": labelled,
        "correct": correct,
        "accuracy": correct / labelled if labelled else None,
        # Every answer with feedback: right digits and agreed "not a digit"s, over digit and "not a digit" labels.
        "feedback_accuracy": (
            (correct + not_digit["agreed"]) / (labelled + not_digit["said_not_digit"])
            if labelled + not_digit["said_not_digit"]
            else None
        ),
        "per_digit": per_digit,
        "not_digit": not_digit,
    }


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)


def _csv_row(row: dict[str, Any]) -> list[Any]:
    values = []
    for column in EXPORT_COLUMNS:
        value = row[column]
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        elif isinstance(value, list):
            value = " ".join(f"{p:.6g}" for p in value)
        values.append("" if value is None else value)
    return values
