"""The predictions table: its schema (created and migrated additively, never dropped), the SQL that writes it, and the
checks a value passes before it is written (a clear ValueError, never a database error).

    python db.py      # applies SCHEMA where the environment points

db.Database runs these statements; nothing else defines the table.
"""

from __future__ import annotations

import base64
import hashlib
import datetime as dt
import math
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg2

from inference.labels import CLASSES, NOT_A_DIGIT, NOT_DIGIT

__all__ = ["NOT_A_DIGIT", "NOT_DIGIT", "NUM_CLASSES"]  # the answers as the rest of storage/ sees them

NUM_CLASSES = len(CLASSES)
SOURCES = ("page", "upload", "api")  # where a prediction came from: the Draw page, the Upload page, the HTTP API


class UnknownPrediction(ValueError):
    """A label for a prediction that is not there (an unknown id or request id)."""


# A labelled row the app answered wrongly: the user gave a digit and it is not the one shown, or the app called it
# "not a digit" and the user gave a digit, or the user said "not a digit" and the app gave a digit.
WRONG = (
    "(true_label IS NOT NULL AND (true_label <> predicted_digit OR is_digit = false))"
    " OR (labelled_not_digit AND is_digit IS DISTINCT FROM false)"
)
RIGHT = (
    "(true_label IS NOT NULL AND true_label = predicted_digit AND is_digit IS DISTINCT FROM false)"
    " OR (labelled_not_digit AND is_digit = false)"
)
# The user's answer as one number for the rollup: -1 none, 0-9 a digit, NOT_DIGIT (the model's class index) "not a
# digit".
ANSWER = f"CASE WHEN labelled_not_digit THEN {NOT_DIGIT} ELSE coalesce(true_label, -1) END"
FLAGGED = "coalesce(is_digit = false, false)"
DAY = "(created_at AT TIME ZONE 'UTC')::date"
# Server time per prediction in 1/8-octave buckets (each ~9 % wide), with each bucket's count and sum: day-by-day
# percentiles from a few hundred rows per day, interpolated as percentile_cont does between bucket means (exact
# when a bucket holds one value, within a bucket's width otherwise), however large the table.
LATENCY_BUCKETS_PER_OCTAVE = 8
LATENCY_BUCKET = f"floor(log(2, greatest(inference_ms, 0.001)::numeric) * {LATENCY_BUCKETS_PER_OCTAVE})::smallint"

# Stats reads these small tables, not the predictions: counts per (UTC day, predicted digit, answer, flagged) and
# latency counts per (day, bucket), kept exact on every write by statement-level triggers over the transition tables
# (one aggregate per statement, so a COPY of a million rows costs one pass; an UPDATE subtracts the old rows and adds
# the new). ~40k rows for a year, whatever the traffic. The function keeps the search_path it was created with: a
# pg_dump file empties it, and its rows must still reach the rollup when loaded into a migrated database.
ROLLUP_FUNCTION = f"""
CREATE OR REPLACE FUNCTION predictions_rollup() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE prediction_counts, prediction_latency;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO prediction_counts AS c (day, predicted_digit, answer, flagged, n)
            SELECT {DAY}, predicted_digit, {ANSWER}, {FLAGGED}, -count(*) FROM old_rows
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (day, predicted_digit, answer, flagged) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO prediction_latency AS l (day, bucket, n, total_ms)
            SELECT {DAY}, {LATENCY_BUCKET}, -count(*), -sum(inference_ms) FROM old_rows WHERE inference_ms IS NOT NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (day, bucket) DO UPDATE SET n = l.n + EXCLUDED.n, total_ms = l.total_ms + EXCLUDED.total_ms;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO prediction_counts AS c (day, predicted_digit, answer, flagged, n)
            SELECT {DAY}, predicted_digit, {ANSWER}, {FLAGGED}, count(*) FROM new_rows
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (day, predicted_digit, answer, flagged) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO prediction_latency AS l (day, bucket, n, total_ms)
            SELECT {DAY}, {LATENCY_BUCKET}, count(*), sum(inference_ms) FROM new_rows WHERE inference_ms IS NOT NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (day, bucket) DO UPDATE SET n = l.n + EXCLUDED.n, total_ms = l.total_ms + EXCLUDED.total_ms;
    END IF;
    RETURN NULL;
END
$fn$"""

# Created once, with its triggers, from the rows already there; the table lock keeps a concurrent write from
# falling between the backfill and the triggers.
ROLLUP_TABLES = f"""
DO $do$
BEGIN
    IF to_regclass('prediction_counts') IS NOT NULL THEN
        RETURN;
    END IF;
    LOCK TABLE predictions IN SHARE ROW EXCLUSIVE MODE;
    CREATE TABLE prediction_counts (
        day date NOT NULL, predicted_digit smallint NOT NULL, answer smallint NOT NULL, flagged boolean NOT NULL,
        n bigint NOT NULL, PRIMARY KEY (day, predicted_digit, answer, flagged));
    CREATE TABLE prediction_latency (
        day date NOT NULL, bucket smallint NOT NULL, n bigint NOT NULL, total_ms double precision NOT NULL,
        PRIMARY KEY (day, bucket));
    INSERT INTO prediction_counts
        SELECT {DAY}, predicted_digit, {ANSWER}, {FLAGGED}, count(*) FROM predictions GROUP BY 1, 2, 3, 4;
    INSERT INTO prediction_latency
        SELECT {DAY}, {LATENCY_BUCKET}, count(*), sum(inference_ms) FROM predictions WHERE inference_ms IS NOT NULL
        GROUP BY 1, 2;
    CREATE TRIGGER predictions_rollup_insert AFTER INSERT ON predictions
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION predictions_rollup();
    CREATE TRIGGER predictions_rollup_update AFTER UPDATE ON predictions
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION predictions_rollup();
    CREATE TRIGGER predictions_rollup_delete AFTER DELETE ON predictions
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION predictions_rollup();
    CREATE TRIGGER predictions_rollup_truncate AFTER TRUNCATE ON predictions
        FOR EACH STATEMENT EXECUTE FUNCTION predictions_rollup();
END
$do$"""

# The schema, one source of truth. The first statement is the spec's original table; every later column arrives as
# an additive, idempotent migration (ADD COLUMN IF NOT EXISTS), so an old table keeps its rows. Never DROP.
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS predictions (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        predicted_digit smallint NOT NULL CONSTRAINT predicted_digit_0_9 CHECK (predicted_digit BETWEEN 0 AND 9),
        confidence real NOT NULL CONSTRAINT confidence_0_1 CHECK (confidence BETWEEN 0 AND 1),
        true_label smallint CONSTRAINT true_label_0_9 CHECK (true_label BETWEEN 0 AND 9)
    )""",
    """ALTER TABLE predictions ADD COLUMN IF NOT EXISTS probabilities real[]
        CONSTRAINT probabilities_10 CHECK (probabilities IS NULL OR cardinality(probabilities) = 10)""",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS image bytea",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS model_version text",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS labelled_at timestamptz",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS request_id uuid CONSTRAINT predictions_request_id_key UNIQUE",
    "CREATE INDEX IF NOT EXISTS predictions_newest_idx ON predictions (created_at DESC, id DESC)",
    # Server-side time of the prediction (preprocess + model), for the operator's latency figures on Stats.
    """ALTER TABLE predictions ADD COLUMN IF NOT EXISTS inference_ms real
        CONSTRAINT inference_ms_positive CHECK (inference_ms IS NULL OR inference_ms >= 0)""",
    # "Not a digit": the model's verdict and score (NULL on rows from models without that class), and the user's
    # answer "Not a digit" (true_label stays NULL then). A constant default adds the column without a table rewrite.
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS is_digit boolean",
    """ALTER TABLE predictions ADD COLUMN IF NOT EXISTS not_digit_score real
        CONSTRAINT not_digit_score_0_1 CHECK (not_digit_score IS NULL OR not_digit_score BETWEEN 0 AND 1)""",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS labelled_not_digit boolean NOT NULL DEFAULT false",
    # History's filters, newest first, each an index walk that stops after one page (EXPLAIN: Index Scan ... Limit):
    # by predicted digit; the wrong answers and the right ones, and "not a digit" (partial indexes: only their rows).
    """CREATE INDEX IF NOT EXISTS predictions_digit_newest_idx
        ON predictions (predicted_digit, created_at DESC, id DESC)""",
    f"""CREATE INDEX IF NOT EXISTS predictions_wrong_newest_idx ON predictions (created_at DESC, id DESC)
        WHERE {WRONG}""",
    f"""CREATE INDEX IF NOT EXISTS predictions_right_newest_idx ON predictions (created_at DESC, id DESC)
        WHERE {RIGHT}""",
    """CREATE INDEX IF NOT EXISTS predictions_not_digit_newest_idx ON predictions (created_at DESC, id DESC)
        WHERE is_digit = false OR labelled_not_digit""",
    ROLLUP_FUNCTION,
    ROLLUP_TABLES,
    # Who made the prediction: the anonymous id of the browser (access/clients.py), so History shows a visitor
    # their own rows only. NULL on rows from before it, and from the API and tools: no visitor sees those.
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS visitor text",
    # Who gave the label (the browser's visitor id, or "api:" and a hash of the API client's address): a retraining
    # set takes at most MAX_LABELS_PER_CLIENT from any one of them (training/feedback.py).
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS labelled_by text",
    # The operator's review of a held label (storage/trust.py): 'accepted' trains on it, 'rejected' never does.
    """ALTER TABLE predictions ADD COLUMN IF NOT EXISTS label_review text
        CONSTRAINT label_review_known CHECK (label_review IS NULL OR label_review IN ('accepted', 'rejected'))""",
    """CREATE INDEX IF NOT EXISTS predictions_visitor_newest_idx ON predictions (visitor, created_at DESC, id DESC)
        WHERE visitor IS NOT NULL""",
    # Retention (make prune) deletes the oldest rows first.
    "CREATE INDEX IF NOT EXISTS predictions_created_idx ON predictions (created_at)",
    # Where the prediction came from: the Draw page, the Upload page or the HTTP API (SOURCES); NULL before it.
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS source text",
    # The loop's scheduled checks (make loop): what each decided and why, for the operator's metrics and alerts.
    """CREATE TABLE IF NOT EXISTS loop_checks (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        checked_at timestamptz NOT NULL DEFAULT now(),
        decision text NOT NULL,
        candidate_version text,
        reasons jsonb NOT NULL,
        facts jsonb NOT NULL
    )""",
)

# The schema's version: a database that carries it (storage/migrate.py) needs no DDL. Any change to SCHEMA changes it.
SCHEMA_VERSION = hashlib.sha256("\n".join(SCHEMA).encode()).hexdigest()[:16]
SCHEMA_LOCK_KEY = 421_950_001  # advisory lock: two processes migrating at once wait for each other

INSERT_SQL = """
    INSERT INTO predictions
        (created_at, predicted_digit, confidence, probabilities, image, model_version, request_id, true_label,
         inference_ms, is_digit, not_digit_score, visitor, source)
    VALUES (COALESCE(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (request_id) DO UPDATE SET request_id = EXCLUDED.request_id
    RETURNING id
"""  # ON CONFLICT ... RETURNING: a retried or replayed insert returns the row it already made, never a second one
# A label carries the time the user gave it: applied only if no newer label is there (a spooled or hung older label
# that lands late must not undo a newer one).
LABEL_SQL = """
    UPDATE predictions SET
        true_label = CASE WHEN labelled_at IS NULL OR labelled_at <= %(at)s THEN %(label)s ELSE true_label END,
        labelled_not_digit = CASE WHEN labelled_at IS NULL OR labelled_at <= %(at)s THEN %(not_digit)s
                                  ELSE labelled_not_digit END,
        labelled_by = CASE WHEN labelled_at IS NULL OR labelled_at <= %(at)s THEN %(by)s ELSE labelled_by END,
        label_review = CASE WHEN labelled_at IS NULL OR labelled_at <= %(at)s THEN NULL ELSE label_review END,
        labelled_at = GREATEST(labelled_at, %(at)s)
    WHERE {key} = %(key)s RETURNING id
"""
# Retention: one batch of the oldest rows before a time (a few thousand per statement: short locks, and the rollup's
# statement triggers subtract each batch exactly).
PRUNE_SQL = """
    DELETE FROM predictions WHERE id IN (
        SELECT id FROM predictions WHERE created_at < %s ORDER BY created_at LIMIT %s
    )
"""
LABEL_BY_ID_SQL = LABEL_SQL.format(key="id")
LABEL_BY_REQUEST_SQL = LABEL_SQL.format(key="request_id")
HISTORY_COLUMNS = (
    "id, created_at, predicted_digit, confidence, true_label, probabilities, image, model_version, inference_ms, "
    "is_digit, not_digit_score, labelled_not_digit, "
    f"CASE WHEN true_label IS NULL AND NOT labelled_not_digit THEN NULL ELSE {RIGHT} END AS correct"
)


# ----------------------------------------------------------------------------------------------------------------
# Validation (a clear ValueError before anything reaches the database)


def check_digit(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be a whole number 0-9, got {value!r}.")
    number = int(value)
    if not 0 <= number < NUM_CLASSES:
        raise ValueError(f"{name} must be between 0 and 9, got {number}.")
    return number


def check_probability(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}.") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}.")
    return number


def check_milliseconds(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"inference_ms must be a number of milliseconds, got {value!r}.") from None
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"inference_ms must be a finite, non-negative number, got {value!r}.")
    return number


def check_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}.")
    if "\x00" in value:
        raise ValueError(f"{name} cannot contain a NUL character (PostgreSQL text does not store it).")
    return value


def check_visitor(value: Any) -> str | None:
    """A visitor id: None, or the browser's token (a few dozen URL-safe characters)."""
    text = check_text("visitor", value)
    if text is not None and not (0 < len(text) <= 64 and text.replace("-", "").replace("_", "").isalnum()):
        raise ValueError("visitor must be the browser's id (1-64 letters, digits, '-' or '_').")
    return text


def prediction_record(
    predicted_digit: Any,
    confidence: Any,
    probabilities: Sequence[float] | None,
    image_png: Any,
    model_version: Any,
    inference_ms: Any,
    is_digit: Any,
    not_digit_score: Any,
    visitor: Any,
    source: Any = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One prediction as the spool and the insert carry it, every value checked; its time is now (the moment the
    answer is shown, however late the write lands)."""
    if is_digit is not None and not isinstance(is_digit, bool):
        raise ValueError(f"is_digit must be True, False or None, got {is_digit!r}.")
    if probabilities is not None:
        probabilities = [check_probability("each probability", p) for p in probabilities]
        if len(probabilities) != NUM_CLASSES:
            raise ValueError(f"probabilities must hold {NUM_CLASSES} values, got {len(probabilities)}.")
    if image_png is not None and not isinstance(image_png, (bytes, bytearray, memoryview)):
        raise ValueError(f"image_png must be bytes, got {type(image_png).__name__}.")
    return {
        "op": "insert",
        "request_id": str(uuid.uuid4()) if request_id is None else check_request_id(request_id),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "predicted_digit": check_digit("predicted_digit", predicted_digit),
        "confidence": check_probability("confidence", confidence),
        "probabilities": probabilities,
        "image": base64.b64encode(bytes(image_png)).decode("ascii") if image_png is not None else None,
        "model_version": check_text("model_version", model_version),
        "inference_ms": check_milliseconds(inference_ms),
        "true_label": None,
        "is_digit": is_digit,
        "not_digit_score": None if not_digit_score is None else check_probability("not_digit_score", not_digit_score),
        "visitor": check_visitor(visitor),
        "source": check_source(source),
    }


def insert_params(record: dict[str, Any]) -> tuple[Any, ...]:
    """INSERT_SQL's parameters for a prediction record (fresh, or replayed from a spool of any age)."""
    image = base64.b64decode(record["image"]) if record.get("image") is not None else None
    return (
        record["created_at"],
        record["predicted_digit"],
        record["confidence"],
        record["probabilities"],
        psycopg2.Binary(image) if image is not None else None,
        record["model_version"],
        record["request_id"],
        record.get("true_label"),
        record.get("inference_ms"),  # spools from before these columns have none
        record.get("is_digit"),
        record.get("not_digit_score"),
        record.get("visitor"),
        record.get("source"),
    )


def label_statement(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The UPDATE and its parameters for a label record; the row is named by request id when it has one."""
    by_request = bool(record.get("request_id"))
    return LABEL_BY_REQUEST_SQL if by_request else LABEL_BY_ID_SQL, {
        "label": record["true_label"],
        "not_digit": bool(record.get("not_digit")),
        # Spools written before labels carried their time are replayed at the replay's time.
        "at": record.get("labelled_at") or dt.datetime.now(dt.timezone.utc).isoformat(),
        "key": record["request_id"] if by_request else record["id"],
        "by": record.get("labelled_by"),
    }


def label_record(true_label: Any, labelled_by: str | None = None) -> dict[str, Any]:
    """A user's answer as the spool and the update carry it (the row it names is added by the caller): a digit
    0-9, `NOT_A_DIGIT` as the button says it (any case), or None to clear it; its time is now; `labelled_by`: who
    gave it (a visitor id, or the API client's hashed address)."""
    not_digit = isinstance(true_label, str) and true_label.strip().lower() == NOT_A_DIGIT
    return {
        "op": "label",
        "id": None,
        "true_label": None if not_digit else check_digit("true_label", true_label, allow_none=True),
        "not_digit": not_digit,
        "request_id": None,
        "labelled_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "labelled_by": check_text("labelled_by", labelled_by),
    }


def check_source(value: Any) -> str | None:
    if value is not None and value not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {value!r}.")
    return value


def check_request_id(value: Any) -> str:
    """A request id: a UUID, as text in its canonical form."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise UnknownPrediction(f"No prediction with request id {str(value)[:40]!r}.") from None
