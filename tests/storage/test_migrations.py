"""Migrations that never hold the table, and the app as a role that is no superuser, on a real PostgreSQL.

pytest tests/storage/test_migrations.py
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

import db
from storage import migrate
from storage.schema import SCHEMA, SCHEMA_VERSION
from tools import pg
from config.paths import PROJECT_DIR

DB_INIT = PROJECT_DIR / "deploy" / "db-init.sh"


def hold_table(dsn: str) -> psycopg2.extensions.connection:
    """A long reader (a slow CSV download): a transaction that has read the table and keeps its lock."""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM predictions")
    return conn  # the transaction stays open until rollback()


def insert_beside(dsn: str, out: list[object]) -> None:
    """An insert from another client, as a replica's would be, cancelled by the server after 2 s."""
    try:
        with psycopg2.connect(dsn, options="-c statement_timeout=2000") as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO predictions (predicted_digit, confidence) VALUES (3, 0.9) RETURNING id")
            out.append(cur.fetchone()[0])  # type: ignore[index]
        conn.close()
    except psycopg2.Error as exc:
        out.append(exc)


def test_a_current_schema_runs_no_ddl_so_a_long_reader_blocks_nothing(database_url: str, tmp_path: Path) -> None:
    db.Database(database_url, spool_path=tmp_path / "a.jsonl").init_db()  # at this version
    reader = hold_table(database_url)
    try:
        starting = db.Database(database_url, spool_path=tmp_path / "b.jsonl", write_timeout=2.0)
        row_id = starting.log_prediction(5, 0.9)  # a new process's first write: its schema check, then the insert
        assert row_id > 0, "stored within 2 s, not spooled behind a lock"
        beside: list[object] = []
        insert_beside(database_url, beside)
        assert isinstance(beside[0], int), beside
        starting.close()
    finally:
        reader.rollback()
        reader.close()


def test_an_upgrade_behind_a_long_reader_gives_up_fast_serves_and_finishes_later(
    fresh_database_url: str, tmp_path: Path
) -> None:
    first = db.Database(fresh_database_url, spool_path=tmp_path / "a.jsonl")
    first.init_db()
    first.close()
    with psycopg2.connect(fresh_database_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM schema_version")  # as if SCHEMA had gained a statement since
    conn.close()
    reader = hold_table(fresh_database_url)
    upgrading = db.Database(fresh_database_url, spool_path=tmp_path / "b.jsonl", write_timeout=5.0)
    try:
        beside: list[object] = []
        other = threading.Thread(target=insert_beside, args=(fresh_database_url, beside))
        with pytest.raises(db.DatabaseUnavailable, match="migration waits for a lock"):
            other.start()  # queued behind the waiting ALTER for at most its lock timeout
            upgrading.check_ready(10.0)
        other.join(10)
        assert isinstance(beside[0], int), f"the insert beside the migration: {beside}"
        row_id = upgrading.log_prediction(4, 0.8)  # still serves: the write is spooled
        assert row_id < 0 and upgrading.pending() == 1
    finally:
        reader.rollback()
        reader.close()
    upgrading.check_ready(30.0)  # the reader is gone: it migrates, and the spool is replayed
    assert upgrading.pending() == 0 and upgrading.resolve(row_id) > 0
    with psycopg2.connect(fresh_database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_version")
        assert cur.fetchall() == [(SCHEMA_VERSION,)]
        cur.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                    "WHERE c.relname = 'predictions' AND NOT i.indisvalid")  # fmt: skip
        assert cur.fetchone() == (0,), "every index valid"
    conn.close()
    upgrading.close()


def test_every_index_is_built_concurrently_and_every_table_statement_in_one_transaction() -> None:
    tables, indexes = migrate.split_schema()
    assert len(tables) + len(indexes) == len(SCHEMA)
    assert indexes and all("CREATE INDEX CONCURRENTLY IF NOT EXISTS" in statement for _, statement in indexes)
    assert not any("CREATE INDEX" in statement for statement in tables)


@pytest.fixture
def app_role(admin_dsn: str) -> Iterator[str]:
    """The app's own role as deploy/db-init.sh makes it (what the Compose database runs at its first start), on a
    database that already holds an old table owned by the superuser (an install from before the role)."""
    role = f"mnist_app_{uuid.uuid4().hex[:8]}"
    dsn = pg.create_database(admin_dsn, prefix="mnist_role")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA[0])
        cur.execute("INSERT INTO predictions (predicted_digit, confidence) VALUES (1, 0.5)")
    conn.close()
    params = psycopg2.extensions.parse_dsn(dsn)
    env = {
        **os.environ,
        "PGHOST": params.get("host", "127.0.0.1"),
        "PGPORT": str(params.get("port", 5432)),
        "POSTGRES_USER": params.get("user", "postgres"),
        "POSTGRES_DB": params["dbname"],
        "APP_DB_USER": role,
        "APP_DB_PASSWORD": "app role password",
    }
    for _ in range(2):  # idempotent: a second run changes nothing and does not fail
        result = subprocess.run(["sh", str(DB_INIT)], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    yield psycopg2.extensions.make_dsn(dsn, user=role, password="app role password")
    pg.drop_database(admin_dsn, dsn)
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {role}")  # our own name
    admin.close()


def test_the_app_works_end_to_end_as_a_role_that_is_no_superuser(app_role: str, tmp_path: Path) -> None:
    conn = psycopg2.connect(app_role)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (False, False, False)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE DATABASE mnist_not_allowed")  # nothing more than its schema
    conn.close()
    database = db.Database(app_role, spool_path=tmp_path / "spool.jsonl")
    database.init_db()  # migrates the superuser's old table: columns, rollup function and triggers, indexes
    row = database.log_prediction(7, 0.97, [0.003] * 7 + [0.97] + [0.003] * 2, b"png", "v", 2.0, True, 0.01)
    assert row > 0 and database.set_true_label(row, 7)
    history = database.get_prediction_history(limit=5)
    assert [r["id"] for r in history][0] == row and history[0]["true_label"] == 7
    stats = database.get_stats()
    assert stats["total"] == 2 and stats["accuracy"] == 1.0, "the old row and the new one"
    exported = b"".join(database.export_csv(None, None, None)).decode().strip().splitlines()
    assert len(exported) == 3
    assert database.prune(days=3650) == 0
    database.close()
