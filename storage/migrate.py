"""Bringing a database up to storage/schema.py's SCHEMA without ever holding the predictions table for long.

    python db.py          # runs it where the environment points (every app process also runs it at first use)

1. A process whose database already carries this SCHEMA's version (the `schema_version` table) runs no DDL at all:
   one read, no lock on the predictions table. Only a real upgrade migrates.
2. An upgrade runs the table statements in one transaction under a short `lock_timeout` (DB_LOCK_TIMEOUT_MS, 1 s):
   an `ALTER TABLE` queued behind a long reader (a CSV download) gives up after a second instead of making every
   insert and read wait behind it. It is retried at the next use (a page load, /readyz, the spool's replayer);
   until then the process serves, spooling its writes, and /readyz says the migration waits.
3. Indexes are built with CREATE INDEX CONCURRENTLY (writes go on meanwhile), outside that transaction; one that a
   timeout left invalid is rebuilt (REINDEX ... CONCURRENTLY) on the next try.
4. Two processes never migrate at once (a session advisory lock, itself under the lock timeout).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg2
import psycopg2.errors

from storage.pool import DatabaseUnavailable
from storage.schema import SCHEMA, SCHEMA_LOCK_KEY, SCHEMA_VERSION

log = logging.getLogger(__name__)

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"""
INDEX = re.compile(r"^\s*CREATE INDEX IF NOT EXISTS (\w+)", re.IGNORECASE)


def is_current(cur: Any) -> bool:
    """True when the database carries this SCHEMA's version (a read: it takes no lock on the predictions table)."""
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL AND to_regclass('predictions') IS NOT NULL AS ok")
    row = cur.fetchone()
    if not (row["ok"] if isinstance(row, dict) else row[0]):
        return False
    cur.execute("SELECT 1 FROM schema_version WHERE version = %s", (SCHEMA_VERSION,))
    return cur.fetchone() is not None


def split_schema() -> tuple[list[str], list[tuple[str, str]]]:
    """SCHEMA as (the statements run in one transaction, [(index name, CREATE INDEX CONCURRENTLY ...)])."""
    tables, indexes = [], []
    for statement in SCHEMA:
        match = INDEX.match(statement)
        if match:
            concurrent = INDEX.sub(lambda m: f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {m.group(1)}", statement, 1)
            indexes.append((match.group(1), concurrent))
        else:
            tables.append(statement)
    return tables, indexes


def build_indexes(cur: Any, indexes: list[tuple[str, str]]) -> None:
    """Each index concurrently (autocommit); one left invalid by an earlier timeout is rebuilt in place."""
    for name, statement in indexes:
        cur.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
            (name,),
        )
        row = cur.fetchone()
        if row and row[0]:
            log.warning("rebuilding index %s, left invalid by an interrupted build", name)
            cur.execute(f"REINDEX INDEX CONCURRENTLY {name}")  # our own name, from SCHEMA
        else:
            cur.execute(statement)


def migrate(dsn: str, connect_args: dict[str, Any], lock_timeout_ms: int, statement_timeout_ms: int) -> bool:
    """Bring the database to SCHEMA_VERSION on a connection of its own; False when it already was. Raises
    DatabaseUnavailable when a lock is not granted within `lock_timeout_ms` (retry later) or it cannot connect."""
    try:
        conn = psycopg2.connect(dsn, **connect_args)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL to migrate: {exc}") from exc
    conn.autocommit = True  # CREATE INDEX CONCURRENTLY refuses to run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = %s", (int(lock_timeout_ms),))
            cur.execute("SET statement_timeout = %s", (int(statement_timeout_ms),))
            cur.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            if is_current(cur):
                return False
            tables, indexes = split_schema()
            with conn.cursor() as tx:
                tx.execute("BEGIN")
                for statement in (*tables, VERSION_TABLE):
                    tx.execute(statement)
                tx.execute("COMMIT")
            build_indexes(cur, indexes)
            cur.execute("INSERT INTO schema_version (version) VALUES (%s) ON CONFLICT DO NOTHING", (SCHEMA_VERSION,))
            log.info("schema migrated to version %s", SCHEMA_VERSION)
            return True
    except (psycopg2.errors.LockNotAvailable, psycopg2.errors.QueryCanceled) as exc:
        raise DatabaseUnavailable(f"the schema migration waits for a lock ({exc.pgerror or exc}); retried") from exc
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise DatabaseUnavailable(f"the database went away during the migration: {exc}") from exc
    finally:
        conn.close()  # also ends the advisory lock and rolls back a transaction a failure left open
