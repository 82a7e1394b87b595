"""db.py against a real PostgreSQL: constraints, concurrency, feedback, hostile text, migrations, outages."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

import db
from config.paths import PROJECT_DIR as ROOT
from tools import pg
from tools.processes import wait_for

PROBS = [0.01] * 9 + [0.91]


def test_log_and_read_back_one_prediction(database: db.Database) -> None:
    pid = database.log_prediction(7, 0.91, PROBS, b"\x89PNG-bytes", "v1")
    assert pid > 0
    (row,) = database.get_prediction_history()
    assert row["id"] == pid and row["predicted_digit"] == 7 and row["true_label"] is None and row["correct"] is None
    assert row["confidence"] == pytest.approx(0.91)
    assert row["probabilities"] == pytest.approx(PROBS)
    assert row["image"] == b"\x89PNG-bytes" and row["model_version"] == "v1"
    assert row["created_at"].tzinfo is not None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: d.log_prediction(10, 0.5), "predicted_digit must be between 0 and 9"),
        (lambda d: d.log_prediction(-1, 0.5), "predicted_digit must be between 0 and 9"),
        (lambda d: d.log_prediction(3, 1.5), "confidence must be between 0 and 1"),
        (lambda d: d.log_prediction(3, float("nan")), "confidence must be between 0 and 1"),
        (lambda d: d.log_prediction(3, 0.5, [0.1] * 9), "probabilities must hold 10 values"),
        (lambda d: d.log_prediction(3, 0.5, model_version="a\x00b"), "NUL"),
        (lambda d: d.log_prediction(True, 0.5), "whole number"),
        (lambda d: d.set_true_label(1, -1), "true_label must be between 0 and 9"),
        (lambda d: d.set_true_label(1, 10), "true_label must be between 0 and 9"),
        (lambda d: d.set_true_label(999_999, 3), "No prediction with id 999999"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error_and_write_nothing(
    database: db.Database, database_url: str, call: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(database)  # type: ignore[operator]
    assert pg.count_rows(database_url) == 0
    assert database.pending() == 0


@pytest.mark.parametrize(
    "column, value, constraint",
    [("predicted_digit", 10, "predicted_digit_0_9"), ("confidence", 1.5, "confidence_0_1")],
)
def test_the_table_itself_rejects_out_of_range_values(
    database: db.Database, database_url: str, column: str, value: float, constraint: str
) -> None:
    """The CHECK constraints hold even for a client that skips db.py's validation."""
    values = {"predicted_digit": 3, "confidence": 0.5, column: value}
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.CheckViolation, match=constraint):
            cur.execute("INSERT INTO predictions (predicted_digit, confidence) VALUES (%s, %s)", tuple(values.values()))
    conn.close()


def test_label_minus_one_rejected_by_the_table(database: db.Database, database_url: str) -> None:
    pid = database.log_prediction(3, 0.5)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.CheckViolation, match="true_label_0_9"):
            cur.execute("UPDATE predictions SET true_label = %s WHERE id = %s", (-1, pid))
    conn.close()


def test_eight_threads_times_250_writes_give_2000_unique_rows(database: db.Database, database_url: str) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        mine = [database.log_prediction((worker + i) % 10, 0.5, model_version=f"w{worker}-{i}") for i in range(250)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 2000 and len(set(ids)) == 2000 and min(ids) > 0
    assert pg.count_rows(database_url) == 2000
    assert database.pending() == 0


def test_feedback_from_two_interleaved_sessions_lands_on_their_own_rows(database: db.Database) -> None:
    alice = database.log_prediction(1, 0.9)
    bob = database.log_prediction(7, 0.8)
    database.set_true_label(alice, 4)  # alice answers after bob predicted: MAX(id) would hit bob's row
    database.set_true_label(bob, 7)
    database.set_true_label(alice, 1)  # and changes her mind
    rows = {r["id"]: r for r in database.get_prediction_history()}
    assert rows[alice]["true_label"] == 1 and rows[alice]["correct"] is True
    assert rows[bob]["true_label"] == 7 and rows[bob]["correct"] is True
    database.set_true_label(bob, None)
    assert {r["id"]: r for r in database.get_prediction_history()}[bob]["true_label"] is None


@pytest.mark.parametrize(
    "hostile",
    ["'); DROP TABLE predictions; --", "Robert'); --", "%s %(x)s {0} \\x00", "ünïcødé ✓ 数字 \U0001f600", "a" * 10_000],
)
def test_hostile_text_is_stored_verbatim(database: db.Database, hostile: str) -> None:
    pid = database.log_prediction(5, 0.5, model_version=hostile)
    (row,) = database.get_prediction_history()
    assert row["id"] == pid and row["model_version"] == hostile


def test_history_filters_and_pages_newest_first(database: db.Database) -> None:
    ids = [database.log_prediction(d % 10, 0.5) for d in range(30)]
    for pid, d in zip(ids[:10], range(10)):
        database.set_true_label(pid, d if d % 2 == 0 else (d + 1) % 10)  # even right, odd wrong
    assert [r["id"] for r in database.get_prediction_history(limit=5)] == ids[::-1][:5]
    assert [r["id"] for r in database.get_prediction_history(limit=5, offset=5)] == ids[::-1][5:10]
    assert {r["predicted_digit"] for r in database.get_prediction_history(digit=3)} == {3}
    assert len(database.get_prediction_history(digit=3)) == 3
    right = database.get_prediction_history(correct=True)
    wrong = database.get_prediction_history(correct=False)
    assert sorted(r["predicted_digit"] for r in right) == [0, 2, 4, 6, 8]
    assert sorted(r["predicted_digit"] for r in wrong) == [1, 3, 5, 7, 9]
    with pytest.raises(ValueError):
        database.get_prediction_history(limit=0)


def test_stats_count_accuracy_per_digit_and_confusion(database: db.Database) -> None:
    for predicted, label in [(1, 1), (1, 7), (7, 7), (3, None), (0, 0)]:
        pid = database.log_prediction(predicted, 0.9)
        if label is not None:
            database.set_true_label(pid, label)
    stats = database.get_stats()
    assert stats["total"] == 5 and stats["labelled"] == 4 and stats["correct"] == 3
    assert stats["accuracy"] == pytest.approx(0.75)
    assert stats["per_digit"][7] == {"labelled": 2, "correct": 1, "accuracy": 0.5}
    assert stats["per_digit"][5]["accuracy"] is None
    assert stats["confusion"][7][1] == 1 and stats["confusion"][1][1] == 1
    assert sum(day["predictions"] for day in stats["daily"]) == 5


def test_init_db_is_idempotent_and_migrates_an_old_table_without_losing_rows(fresh_database_url: str) -> None:
    with psycopg2.connect(fresh_database_url) as conn, conn.cursor() as cur:
        # The spec's original table, as an older version of the app created it.
        cur.execute(
            "CREATE TABLE predictions (id serial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), "
            "predicted_digit smallint NOT NULL, confidence real NOT NULL, true_label smallint)"
        )
        cur.execute("INSERT INTO predictions (predicted_digit, confidence, true_label) VALUES (4, 0.7, 4), (2, 0.6, 3)")
    conn.close()
    handle = db.Database(fresh_database_url, spool_path=Path("/nonexistent-never-used/spool.jsonl"))
    handle.init_db()
    handle.init_db()
    rows = handle.get_prediction_history()
    assert [(r["predicted_digit"], r["true_label"]) for r in rows] == [(2, 3), (4, 4)]
    assert all(r["image"] is None and r["model_version"] is None for r in rows)
    new_id = handle.log_prediction(9, 0.99, [0.1] * 10, b"png", "v2")
    assert new_id > max(r["id"] for r in rows)
    handle.close()


def test_with_migrations_in_a_job_the_app_waits_and_db_py_migrates(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DB_MIGRATE_IN_APP=0 (Kubernetes): the app's handle runs no DDL and is not ready until `python db.py`, the
    migration Job, has brought the schema up; then it serves without migrating."""
    monkeypatch.setenv("DB_MIGRATE_IN_APP", "0")
    app = db.Database(fresh_database_url, spool_path=tmp_path / "spool.jsonl", connect_timeout=2)
    with pytest.raises(db.DatabaseUnavailable, match="waiting for `python db.py`"):
        app.check_ready(10)
    with psycopg2.connect(fresh_database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('predictions')")
        assert cur.fetchone() == (None,), "the app ran no DDL"
    conn.close()
    job = subprocess.run(
        [sys.executable, "db.py"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": fresh_database_url, "SPOOL_PATH": str(tmp_path / "job-spool.jsonl")},
    )  # fmt: skip
    assert job.returncode == 0 and "schema ready" in job.stdout, job.stdout + job.stderr
    app.check_ready(10)
    assert app.log_prediction(3, 0.9, PROBS, b"png", "v") > 0
    app.close()


def test_configuration_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("POSTGRES_HOST", "db.internal")
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cr3t pass'word")
    dsn = db.configured_dsn()
    assert dsn is not None and "host=db.internal" in dsn and "s3cr3t" in dsn
    assert "s3cr3t" not in db.describe(dsn)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h:5433/x")
    assert db.configured_dsn() == "postgresql://u:p@h:5433/x"


def test_unreachable_database_spools_and_replays_exactly_once(tmp_path: Path, database_url: str) -> None:
    """Writes made while the database is unreachable are kept on disk and land, in order, once it is back."""
    down = db.Database("postgresql://nobody@127.0.0.1:1/none", spool_path=tmp_path / "spool.jsonl", connect_timeout=1)
    first = down.log_prediction(2, 0.8, PROBS, b"img", "v1")
    second = down.log_prediction(5, 0.7)
    assert first < 0 and second < 0 and first != second
    down.set_true_label(first, 3)
    down.set_true_label(first, 2)  # changed mind: the later label must win after replay
    assert down.pending() == 4

    # Point the same handle at the live database (the server "came back").
    down._dsn = database_url
    down.close()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE predictions RESTART IDENTITY")
    conn.close()
    assert down.flush_spool() == 0 and down.pending() == 0
    assert down.flush_spool() == 0  # replaying again adds nothing
    rows = down.get_prediction_history()
    assert [(r["predicted_digit"], r["true_label"]) for r in rows] == [(5, None), (2, 2)]
    down.set_true_label(first, 9)  # the provisional id still reaches its row after replay
    assert {r["predicted_digit"]: r["true_label"] for r in down.get_prediction_history()}[2] == 9
    down.close()


def test_at_its_cap_the_spool_refuses_a_write_and_never_grows_past_it(tmp_path: Path) -> None:
    down = db.Database("postgresql://nobody@127.0.0.1:1/none", spool_path=tmp_path / "spool.jsonl", connect_timeout=1)
    down.spool.max_bytes = 2000
    kept = []
    with pytest.raises(db.SpoolFull, match="full"):
        for _ in range(100):
            kept.append(down.log_prediction(2, 0.8, PROBS, b"img", "v1"))
    assert 0 < len(kept) < 100 and all(row_id < 0 for row_id in kept)
    assert down.pending() == len(kept) and down.spool.size() <= 2000, "the refused write left nothing behind"
    down.spool.max_bytes = down.spool.size()  # a label is shorter than a prediction: no room for it either now
    with pytest.raises(db.SpoolFull):
        down.set_true_label(kept[0], 3)
    assert down.pending() == len(kept)
    down.close()


def test_server_stopped_mid_run_and_restarted_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = pg.PrivateServer(tmp_path / "pgdata")
    handle = db.Database(server.dsn, spool_path=tmp_path / "spool.jsonl", connect_timeout=1)
    handle.init_db()
    total = 300
    ids: list[int] = []

    def writer() -> None:
        for i in range(total):
            ids.append(handle.log_prediction(i % 10, 0.5, model_version=f"write-{i}"))
            if i % 10 == 0:
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    server.stop()
    time.sleep(1.0)
    server.start()
    thread.join()
    assert handle.flush_spool() == 0

    with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT model_version, count(*) FROM predictions GROUP BY 1")
        counts = dict(cur.fetchall())
    conn.close()
    spooled = sum(1 for i in ids if i < 0)
    assert spooled > 0, "the outage should have spooled some writes (test timing)"
    assert len(counts) == total, f"lost {total - len(counts)} writes"
    assert set(counts.values()) == {1}, "some writes were duplicated"
    handle.close()
    server.stop()


def test_no_spool_file_is_created_until_something_must_be_spooled(database_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool-dir"
    handle = db.Database(database_url, spool_path=spool_dir / "spool.jsonl")
    handle.init_db()
    handle.ensure_ready()
    handle.set_true_label(handle.log_prediction(3, 0.9), 3)
    assert handle.flush_spool() == 0 and handle.pending() == 0
    assert not spool_dir.exists(), "no spool, lock or folder while the database answers"
    handle.close()


def test_spooled_writes_are_replayed_in_the_background_when_the_database_is_back(tmp_path: Path) -> None:
    server = pg.PrivateServer(tmp_path / "pgdata")
    handle = db.Database(server.dsn, spool_path=tmp_path / "spool.jsonl", connect_timeout=1, replay_interval=0.5)
    handle.init_db()
    server.stop()
    provisional = handle.log_prediction(4, 0.8)
    assert provisional < 0 and handle.set_true_label(provisional, 4) is False
    assert handle.pending() == 2
    server.start()
    # Nobody calls the handle again: the replayer alone must store both writes.
    assert wait_for(lambda: handle.pending() == 0, 20), "the spool was not replayed in the background"
    real = handle.resolve(provisional)
    assert real > 0
    assert [(r["id"], r["true_label"]) for r in handle.get_prediction_history()] == [(real, 4)]
    handle.close()
    server.stop()


def test_a_hung_database_never_holds_a_write_for_long_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    """SIGSTOP the server (a frozen VM): it accepts connections but answers nothing, and enforces no timeout."""
    server = pg.PrivateServer(tmp_path / "pgdata")
    handle = db.Database(
        server.dsn, spool_path=tmp_path / "spool.jsonl", connect_timeout=2, write_timeout=1.0, replay_interval=0.5
    )
    handle.init_db()
    before = handle.log_prediction(1, 0.9)  # pooled connections are open: the next writes reach a frozen backend
    assert before > 0
    frozen = server.freeze()
    try:
        waits, ids = [], []
        for digit in (2, 3):
            start = time.monotonic()
            ids.append(handle.log_prediction(digit, 0.7))
            assert handle.set_true_label(ids[-1], digit) is False
            waits.append(time.monotonic() - start)
        assert all(i < 0 for i in ids)
        assert max(waits) < 3.5, f"a write waited {max(waits):.1f} s on a hung database"
        assert handle.pending() == 4
    finally:
        server.thaw(frozen)
    # Writes that were sent before the freeze may commit now, and the replay must not double them.
    assert wait_for(lambda: handle.pending() == 0, 30), "the spool was not replayed after the database came back"
    rows = {r["predicted_digit"]: r["true_label"] for r in handle.get_prediction_history()}
    assert rows == {1: None, 2: 2, 3: 3}
    assert pg.count_rows(server.dsn) == 3
    handle.close()
    server.stop()


def test_a_late_older_label_never_overwrites_a_newer_one(database: db.Database) -> None:
    row = database.log_prediction(7, 0.9)
    database.set_true_label(row, 1)
    older = {"op": "label", "id": row, "true_label": 9, "request_id": None, "labelled_at": "2000-01-01T00:00:00+00:00"}
    database._run(lambda cur: database._apply(cur, older))  # a spooled or hung label from long ago lands now
    assert database.get_prediction_history()[0]["true_label"] == 1


def test_server_time_is_stored_per_prediction_and_summarised_per_day(database: db.Database) -> None:
    for ms in (1.0, 2.0, 3.0, 4.0, 100.0):
        database.log_prediction(5, 0.9, inference_ms=ms)
    database.log_prediction(5, 0.9)  # rows from before the column, or without a figure, are left out
    assert database.get_prediction_history()[1]["inference_ms"] == pytest.approx(100.0)
    (today,) = database.get_stats()["daily"]
    assert today["predictions"] == 6
    assert today["inference_p50_ms"] == pytest.approx(3.0)
    assert 4.0 < today["inference_p95_ms"] <= 100.0
    bad_values: list[Any] = [-1.0, float("nan"), "fast"]
    for bad in bad_values:
        with pytest.raises(ValueError, match="inference_ms"):
            database.log_prediction(5, 0.9, inference_ms=bad)
