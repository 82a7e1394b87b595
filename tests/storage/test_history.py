"""History pages, filters and the CSV export; Stats from the rollup; "not a digit" in storage; spool slots per
process. Against a real PostgreSQL (the smoke size of `make bench-history` included)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tools.bench import bench_history, bench_inserts
import db
from tools import pg
from storage import spool
from storage.schema import SCHEMA
from config.paths import PROJECT_DIR


def stats_by_scan(dsn: str) -> dict[str, object]:
    """What the rollup must agree with: the same figures counted from the predictions table itself."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE true_label IS NOT NULL), "
            "count(*) FILTER (WHERE true_label = predicted_digit AND is_digit IS DISTINCT FROM false), "
            "count(*) FILTER (WHERE is_digit = false), count(*) FILTER (WHERE labelled_not_digit) FROM predictions"
        )
        total, labelled, correct, flagged, said = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return {"total": total, "labelled": labelled, "correct": correct, "flagged": flagged, "said": said}


def assert_rollup_matches(database: db.Database, dsn: str) -> None:
    stats, scan = database.get_stats(), stats_by_scan(dsn)
    assert stats["total"] == scan["total"]
    assert stats["labelled"] == scan["labelled"]
    assert stats["correct"] == scan["correct"]
    assert stats["not_digit"]["flagged"] == scan["flagged"]
    assert stats["not_digit"]["said_not_digit"] == scan["said"]


def test_not_a_digit_is_stored_with_the_models_verdict_and_the_users_answer(database: db.Database) -> None:
    letter = database.log_prediction(4, 0.6, is_digit=False, not_digit_score=0.97)
    digit = database.log_prediction(7, 0.99, is_digit=True, not_digit_score=0.001)
    old = database.log_prediction(3, 0.9)  # a model without the class: NULL, read as a digit
    database.set_true_label(letter, db.NOT_A_DIGIT)
    database.set_true_label(digit, db.NOT_A_DIGIT)  # the user disagrees with the model: it is a doodle
    database.set_true_label(old, 3)
    rows = {r["id"]: r for r in database.get_prediction_history()}
    assert rows[letter]["is_digit"] is False and rows[letter]["labelled_not_digit"] and rows[letter]["correct"] is True
    assert rows[letter]["not_digit_score"] == pytest.approx(0.97) and rows[letter]["true_label"] is None
    assert rows[digit]["correct"] is False
    assert rows[old]["is_digit"] is None and rows[old]["correct"] is True
    stats = database.get_stats()
    assert stats["labelled"] == 1 and stats["accuracy"] == 1.0, "digit accuracy counts digit answers only"
    assert stats["not_digit"] == {"flagged": 1, "said_not_digit": 2, "agreed": 1, "missed": 1, "false_alarms": 0}
    database.set_true_label(letter, 4)  # changed their mind: it was a 4 after all
    assert database.get_stats()["not_digit"]["false_alarms"] == 1
    with pytest.raises(ValueError):
        database.set_true_label(letter, "not a letter")
    with pytest.raises(ValueError, match="is_digit"):
        database.log_prediction(3, 0.5, is_digit="yes")  # type: ignore[arg-type]


def test_history_filters_pick_exactly_their_rows(database: db.Database) -> None:
    right = database.log_prediction(7, 0.9, is_digit=True)
    wrong = database.log_prediction(7, 0.9, is_digit=True)
    flagged = database.log_prediction(2, 0.5, is_digit=False)
    unlabelled = database.log_prediction(7, 0.9, is_digit=True)
    database.set_true_label(right, 7)
    database.set_true_label(wrong, 1)
    database.set_true_label(flagged, db.NOT_A_DIGIT)

    def ids(**kwargs: object) -> set[int]:
        return {r["id"] for r in database.get_prediction_history(**kwargs)}  # type: ignore[arg-type]

    assert ids() == {right, wrong, flagged, unlabelled}
    assert ids(digit=7) == {right, wrong, unlabelled}
    assert ids(correct=True) == {right, flagged}
    assert ids(correct=False) == {wrong}
    assert ids(digit=7, correct=True) == {right}
    assert ids(not_digit=True) == {flagged}
    assert ids(not_digit=False, digit=7) == {right, wrong, unlabelled}


def test_history_pages_by_keyset_without_gaps_or_repeats(database: db.Database) -> None:
    made = [database.log_prediction(d % 10, 0.9) for d in range(23)]
    seen: list[int] = []
    before = None
    while True:
        page = database.get_prediction_history(limit=5, before=before)
        if not page:
            break
        seen += [r["id"] for r in page]
        before = (page[-1]["created_at"], page[-1]["id"])
    assert seen == sorted(made, reverse=True)
    with pytest.raises(ValueError, match="before"):
        database.get_prediction_history(before=("yesterday", 3))  # type: ignore[arg-type]


def test_csv_export_streams_every_matching_row(database: db.Database) -> None:
    for d in range(12):
        database.log_prediction(d % 10, 0.5 + d / 100, is_digit=d != 5, inference_ms=1.0 + d)
    chunks = list(database.export_csv())
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 12 and rows[0]["id"] == "12", "newest first"
    assert {r["is_digit"] for r in rows} == {"True", "False"}
    sevens = list(csv.DictReader(io.StringIO(b"".join(database.export_csv(digit=7)).decode())))
    assert [r["predicted_digit"] for r in sevens] == ["7"]


def test_csv_export_reads_in_batches(database: db.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import reads

    monkeypatch.setattr(reads, "EXPORT_BATCH", 10)
    for d in range(35):
        database.log_prediction(d % 10, 0.9)
    chunks = list(database.export_csv())
    assert len(chunks) == 4, "a chunk per batch of rows, the last one partial"
    assert sum(chunk.count(b"\n") for chunk in chunks) == 36  # the header and 35 rows


def test_the_rollup_follows_inserts_labels_deletes_and_truncate(database: db.Database, database_url: str) -> None:
    ids = [database.log_prediction(d % 10, 0.9, is_digit=d % 7 != 0, inference_ms=float(d + 1)) for d in range(40)]
    for i, row in enumerate(ids[:20]):
        database.set_true_label(row, db.NOT_A_DIGIT if i % 9 == 0 else (i % 10 if i % 3 else (i + 1) % 10))
    database.set_true_label(ids[1], None)  # cleared
    assert_rollup_matches(database, database_url)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM predictions WHERE id = ANY(%s)", (ids[30:],))
        cur.execute(  # a bulk statement: one pass of the statement trigger
            "INSERT INTO predictions (predicted_digit, confidence, true_label) "
            "SELECT g % 10, 0.9, CASE WHEN g % 2 = 0 THEN g % 10 END FROM generate_series(1, 500) g"
        )
    conn.close()
    assert_rollup_matches(database, database_url)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE predictions")
    conn.close()
    assert database.get_stats()["total"] == 0


def test_rows_loaded_as_pg_dump_files_load_them_reach_the_rollup(database: db.Database, database_url: str) -> None:
    """A pg_dump file empties search_path before its COPY (DEPLOYMENT.md restores feedback that way): the trigger
    must still find the rollup tables, or the whole load fails."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        cur.execute(
            "INSERT INTO public.predictions (predicted_digit, confidence, true_label) "
            "VALUES (3, 0.5, 3), (4, 0.6, NULL)"
        )
    conn.close()
    stats = database.get_stats()
    assert stats["total"] == 2 and stats["labelled"] == 1


def test_the_rollup_is_built_from_the_rows_of_an_older_table(fresh_database_url: str, tmp_path: Path) -> None:
    """An existing install (the table, no rollup yet) gets the rollup from its rows at the first start."""
    with psycopg2.connect(fresh_database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE predictions (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "created_at timestamptz NOT NULL DEFAULT now(), predicted_digit smallint NOT NULL, "
            "confidence real NOT NULL, true_label smallint)"
        )
        cur.execute(
            "INSERT INTO predictions (created_at, predicted_digit, confidence, true_label) SELECT "
            "now() - g * interval '1 hour', g % 10, 0.9, CASE WHEN g % 3 = 0 THEN (g + g % 2) % 10 END "
            "FROM generate_series(1, 300) g"
        )
    conn.close()
    handle = db.Database(fresh_database_url, spool_path=tmp_path / "spool.jsonl")
    handle.init_db()
    assert_rollup_matches(handle, fresh_database_url)
    assert sum(day["predictions"] for day in handle.get_stats(days=30)["daily"]) == 300
    handle.close()


def test_a_big_old_table_migrates_at_first_use_past_the_statement_timeout(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Upgrading an install with a big table: the first use builds indexes and the rollup from every row, which takes
    longer than the statement timeout that guards the app's own queries. It must finish, not be cancelled for ever."""
    with psycopg2.connect(fresh_database_url) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA[0])  # the original table
        cur.execute(
            "INSERT INTO predictions (created_at, predicted_digit, confidence, true_label) SELECT "
            "now() - g * interval '1 minute', g % 10, 0.9, CASE WHEN g % 3 = 0 THEN g % 10 END "
            "FROM generate_series(1, 200000) g"
        )
    conn.close()
    handle = db.Database(fresh_database_url, spool_path=tmp_path / "spool.jsonl", statement_timeout_ms=20)
    rows = handle.get_prediction_history(limit=5)  # the first call of the handle runs the migration
    assert len(rows) == 5 and handle.get_stats()["total"] == 200_000
    handle.close()


def test_server_time_percentiles_match_postgresqls_own(database: db.Database, database_url: str) -> None:
    values = [0.8, 1.1, 1.3, 1.9, 2.2, 2.4, 3.5, 6.0, 15.0, 120.0] * 7
    for ms in values:
        database.log_prediction(1, 0.9, inference_ms=ms)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY inference_ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY inference_ms) FROM predictions"
        )
        p50, p95 = cur.fetchone()  # type: ignore[misc]
    conn.close()
    (today,) = database.get_stats()["daily"]
    assert today["inference_p50_ms"] == pytest.approx(p50, rel=0.05)
    assert today["inference_p95_ms"] == pytest.approx(p95, rel=0.1)


def test_history_bench_builds_and_times_a_table(admin_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make bench-history` at smoke size: the COPY build, the rollup it leaves, every filter timed."""
    monkeypatch.setenv("TEST_DATABASE_URL", admin_dsn)
    results = bench_history.run(rows=3_000, repeats=2, page=20, show_plans=True)
    assert results["stats_total_matches"]
    assert set(results["history"]) == {name for name, _ in bench_history.HISTORY_FILTERS}
    assert "Index Scan using predictions_wrong_newest_idx" in results["plans"]["wrong only"]


def test_the_insert_ceiling_bench_writes_through_the_app_s_path_and_pgbench(
    admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make bench-inserts` at smoke size: app-path writers in processes of their own, pgbench beside them."""
    monkeypatch.setenv("TEST_DATABASE_URL", admin_dsn)
    assert bench_inserts.main(["--seconds", "1", "--writers", "1,2"]) == 0
    figures = json.loads((bench_inserts.ARTIFACTS / "bench-inserts.json").read_text())
    assert [run["writers"] for run in figures["app"]] == [1, 2] and all(run["spooled"] == 0 for run in figures["app"])
    assert figures["rows"] >= sum(run["per_second"] for run in figures["app"]) * 0.5 > 0, "the rows really landed"
    if shutil.which("pgbench"):
        assert [run["clients"] for run in figures["pgbench"]] == [1, 2] and figures["pgbench"][0]["per_second"] > 0


def test_each_process_claims_a_spool_file_of_its_own_and_takes_over_a_dead_ones(tmp_path: Path) -> None:
    dead = spool.Spool(tmp_path / spool.slot_name(3))
    dead.append({"op": "label", "id": 1, "true_label": 2})
    code = (
        "import pathlib, sys, time; from storage import spool; "
        "print(spool.claim(pathlib.Path(sys.argv[1])), flush=True); time.sleep(5)"
    )
    root = PROJECT_DIR
    first = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        mine = Path(first.stdout.readline().strip())
        second = subprocess.run(
            [sys.executable, "-c", code.replace("time.sleep(5)", "pass"), str(tmp_path)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        theirs = Path(second.stdout.strip())
    finally:
        first.kill()
        first.wait()
    assert mine.name == "spool.jsonl" and theirs.name == "spool-2.jsonl", "two live processes, two files"
    assert not dead.has_writes() and spool.Spool(mine).pending() == 1, "the dead slot's write moved to a live spool"


def test_stats_reject_a_bad_window(database: db.Database) -> None:
    for bad in (0, -3, "30", True):
        with pytest.raises(ValueError, match="days"):
            database.get_stats(days=bad)  # type: ignore[arg-type]


def test_history_times_are_aware_and_the_export_has_iso_times(database: db.Database) -> None:
    database.log_prediction(5, 0.9)
    (row,) = database.get_prediction_history()
    assert row["created_at"].tzinfo is not None and row["created_at"] <= dt.datetime.now(dt.timezone.utc)
    (line,) = list(csv.DictReader(io.StringIO(b"".join(database.export_csv()).decode())))
    assert dt.datetime.fromisoformat(line["created_at"]).tzinfo is not None


def test_nothing_is_logged_by_a_history_read(database: db.Database, database_url: str) -> None:
    database.get_prediction_history(digit=3, correct=False, not_digit=True)
    list(database.export_csv(correct=True))
    assert pg.count_rows(database_url) == 0
