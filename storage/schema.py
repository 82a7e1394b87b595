"""The predictions table: its schema (created and migrated additively, never dropped) and the SQL that writes it (the
values it writes are checked in storage/records.py).

    python db.py      # applies SCHEMA where the environment points

db.Database runs these statements; nothing else defines the table.
"""

from __future__ import annotations

import hashlib

from inference.labels import CLASSES, MAX_DIGITS as MAX_NUMBER_DIGITS, NOT_A_DIGIT, NOT_DIGIT

__all__ = [
    "MAX_NUMBER_DIGITS",
    "NOT_A_DIGIT",
    "NOT_DIGIT",
    "NUM_CLASSES",
]  # the answers as the rest of storage/ sees them

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
# A number's row (several digits read at once: `digits` holds them) counts each of its digits as a digit's answer
# would: the part's digit, the user's digit at that place (-1 unless the number they typed has as many digits) and the
# part's own "not a digit" verdict. So Stats' digit figures cover both kinds; number_counts counts the rows.
SINGLE = "digits IS NULL"
PART_ANSWER = (
    "CASE WHEN length(true_number) = jsonb_array_length(digits) THEN substr(true_number, place::int, 1)::smallint "
    "ELSE -1 END"
)
PART_FLAGGED = "NOT coalesce((part->>'is_digit')::boolean, true)"
# A number's row: the digits its parts read as, left to right (NULL on a single digit's row); the number it showed
# (NULL when it was not read as one: a part not a digit, digits touching); and its parts without their images (the
# row's own image holds them side by side), as History and the API's readers want them.
DIGITS_READ = (
    "(SELECT string_agg(part->>'digit', '' ORDER BY place) "
    "FROM jsonb_array_elements(digits) WITH ORDINALITY AS d(part, place))"
)
NUMBER_SHOWN = f"CASE WHEN is_digit IS DISTINCT FROM false THEN {DIGITS_READ} END"
PARTS = (
    "(SELECT jsonb_agg(part - 'image' ORDER BY place) "
    "FROM jsonb_array_elements(digits) WITH ORDINALITY AS d(part, place))"
)
# Server time per prediction in 1/8-octave buckets (each ~9 % wide), with each bucket's count and sum: day-by-day
# percentiles from a few hundred rows per day, interpolated as percentile_cont does between bucket means (exact
# when a bucket holds one value, within a bucket's width otherwise), however large the table.
LATENCY_BUCKETS_PER_OCTAVE = 8
LATENCY_BUCKET = f"floor(log(2, greatest(inference_ms, 0.001)::numeric) * {LATENCY_BUCKETS_PER_OCTAVE})::smallint"


def rollup_statements(rows: str, sign: str) -> str:
    """The rollup's upserts for a statement's transition table `rows` (new_rows added, old_rows subtracted: `sign`)."""
    return f"""
        INSERT INTO prediction_counts AS c (day, predicted_digit, answer, flagged, n)
            SELECT day, digit, answer, flagged, {sign}count(*) FROM (
                SELECT {DAY} AS day, predicted_digit AS digit, {ANSWER} AS answer, {FLAGGED} AS flagged
                FROM {rows} WHERE {SINGLE}
                UNION ALL
                SELECT {DAY}, (part->>'digit')::smallint, {PART_ANSWER}, {PART_FLAGGED}
                FROM {rows} CROSS JOIN LATERAL jsonb_array_elements(digits) WITH ORDINALITY AS d(part, place)
                WHERE NOT {SINGLE}
            ) AS cells GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (day, predicted_digit, answer, flagged) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO number_counts AS c (day, digits, shown, labelled, right_whole, n)
            SELECT {DAY}, jsonb_array_length(digits), coalesce(is_digit, true), true_number IS NOT NULL,
                coalesce(true_number = {NUMBER_SHOWN}, false), {sign}count(*)
            FROM {rows} WHERE NOT {SINGLE} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (day, digits, shown, labelled, right_whole) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO prediction_latency AS l (day, bucket, n, total_ms)
            SELECT {DAY}, {LATENCY_BUCKET}, {sign}count(*), {sign}sum(inference_ms) FROM {rows}
            WHERE inference_ms IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (day, bucket) DO UPDATE SET n = l.n + EXCLUDED.n, total_ms = l.total_ms + EXCLUDED.total_ms;"""


# Stats reads these small tables, not the predictions: counts per (UTC day, predicted digit, answer, flagged), per
# (day, number length, shown as a number, labelled, right as a whole) and latency counts per (day, bucket), kept exact
# on every write by statement-level triggers over the transition tables (one aggregate per statement, so a COPY of a
# million rows costs one pass; an UPDATE subtracts the old rows and adds the new). ~40k rows for a year, whatever the
# traffic. The function keeps the search_path it was created with: a pg_dump file empties it, and its rows must still
# reach the rollup when loaded into a migrated database.
ROLLUP_FUNCTION = f"""
CREATE OR REPLACE FUNCTION predictions_rollup() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE prediction_counts, prediction_latency, number_counts;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN{rollup_statements("old_rows", "-")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN{rollup_statements("new_rows", "")}
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
    # A number (inference/number.py): its parts left to right, each {digit, confidence, probabilities, is_digit,
    # not_digit_score, box: [left, top, right, bottom] in the drawing's pixels, image: its 28x28 input as base64 PNG};
    # NULL on a single digit's row. The row's own columns hold the answer as shown: predicted_digit the first part's,
    # confidence the product of the parts' (the chance every digit is right), is_digit whether it read as a number,
    # image the parts' inputs side by side (28 x 28n). `true_number`: the number the user says they wrote.
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS digits jsonb",
    """ALTER TABLE predictions ADD COLUMN IF NOT EXISTS true_number text
        CONSTRAINT true_number_digits CHECK (true_number IS NULL OR true_number ~ '^[0-9]{1,8}$')""",
    """CREATE INDEX IF NOT EXISTS predictions_numbers_newest_idx ON predictions (created_at DESC, id DESC)
        WHERE digits IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS number_counts (
        day date NOT NULL, digits smallint NOT NULL, shown boolean NOT NULL, labelled boolean NOT NULL,
        right_whole boolean NOT NULL, n bigint NOT NULL, PRIMARY KEY (day, digits, shown, labelled, right_whole)
    )""",
)

# The schema's version: a database that carries it (storage/migrate.py) needs no DDL. Any change to SCHEMA changes it.
SCHEMA_VERSION = hashlib.sha256("\n".join(SCHEMA).encode()).hexdigest()[:16]
SCHEMA_LOCK_KEY = 421_950_001  # advisory lock: two processes migrating at once wait for each other

INSERT_SQL = """
    INSERT INTO predictions
        (created_at, predicted_digit, confidence, probabilities, image, model_version, request_id, true_label,
         inference_ms, is_digit, not_digit_score, visitor, source, digits)
    VALUES (COALESCE(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
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
        true_number = CASE WHEN labelled_at IS NULL OR labelled_at <= %(at)s THEN %(number)s ELSE true_number END,
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
    f"is_digit, not_digit_score, labelled_not_digit, {PARTS} AS digits, {DIGITS_READ} AS number, true_number, "
    f"CASE WHEN true_label IS NULL AND NOT labelled_not_digit AND true_number IS NULL THEN NULL "
    f"WHEN digits IS NOT NULL THEN true_number IS NOT DISTINCT FROM {NUMBER_SHOWN} ELSE {RIGHT} END AS correct"
)
