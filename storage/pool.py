"""Connections to one PostgreSQL database: a small pool, transactions that survive a server restart, and waits
that a hung server cannot stretch.

    python -c "from storage.pool import Connections; print(Connections()._run(lambda cur: cur.execute('SELECT 1')))"

`db.Database` builds on this (writes, the spool, the schema); `storage.reads.Reads` reads through it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from config.settings import settings
from storage.config import configured_dsn, describe, embedded_dsn

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or did not answer in time (writes are spooled; reads report it)."""


class Connections:
    """A thread-safe pool of connections to one database (`dsn`, or where the environment points)."""

    def __init__(
        self,
        dsn: str | None = None,
        pool_size: int | None = None,
        connect_timeout: int | None = None,
        statement_timeout_ms: int | None = None,
        pool_wait_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        current = settings()
        self.pool_size = pool_size or current.db_pool_size
        timeout_ms = statement_timeout_ms or current.db_statement_timeout_ms
        self._connect_args: dict[str, Any] = {
            "connect_timeout": connect_timeout or current.db_connect_timeout,
            "options": f"-c statement_timeout={timeout_ms}",
            "application_name": "mnist-digit-classifier",
        }
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pool_lock = threading.Lock()
        # ThreadedConnectionPool raises when exhausted; the semaphore makes callers wait for a free connection.
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._pool_wait = pool_wait_seconds
        # Bounded waits: the database work runs on these threads, the caller waits at most the timeout.
        self._workers = concurrent.futures.ThreadPoolExecutor(self.pool_size + 2, thread_name_prefix="db")

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            self._dsn = configured_dsn() or embedded_dsn()
        return self._dsn

    # -- connections -------------------------------------------------------------------------------------------

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                try:
                    # minconn == maxconn: connections are opened once and kept (a reconnect costs more than a query).
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self.pool_size, self.pool_size, self.dsn, **self._connect_args
                    )
                except psycopg2.OperationalError as exc:
                    raise DatabaseUnavailable(f"cannot connect to PostgreSQL ({describe(self.dsn)}): {exc}") from exc
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg2.extensions.connection]:
        if not self._slots.acquire(timeout=self._pool_wait):
            raise DatabaseUnavailable(f"all {self.pool_size} database connections stayed busy for {self._pool_wait}s")
        try:
            pool = self._get_pool()
            try:
                conn = pool.getconn()
            except psycopg2.OperationalError as exc:
                raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
            broken = True
            try:
                yield conn
                broken = bool(conn.closed)
            finally:
                pool.putconn(conn, close=broken or bool(conn.closed))
        finally:
            self._slots.release()

    def _export_connection(self) -> psycopg2.extensions.connection:
        """A connection outside the pool for one long read (the CSV export): a download that takes minutes must not
        hold one of the few connections the page's writes need."""
        return psycopg2.connect(self.dsn, **self._connect_args)

    def _run(self, work: Callable[[Any], T]) -> T:
        """Run `work(cursor)` in one transaction; replace dead pooled connections and retry (server restarts)."""
        last: Exception | None = None
        for _ in range(self.pool_size + 1):  # after a restart every pooled connection is dead: each fails fast once
            try:
                with self._connection() as conn:
                    with conn:  # commit on success, roll back on error
                        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                            return work(cur)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                if isinstance(exc, psycopg2.errors.QueryCanceled):
                    raise DatabaseUnavailable(f"the database timed out: {exc}") from exc
                last = exc
                log.warning("database connection failed (%s); retrying on a fresh connection", exc)
        raise DatabaseUnavailable(f"the database is unreachable: {last}") from last

    def _bounded(self, work: Callable[[], T], timeout: float) -> T:
        """`work()` on a worker thread, waited for at most `timeout` seconds. A server that accepts connections but
        answers nothing (a stalled disk, a frozen VM) enforces no statement timeout, so the bound must be ours. On
        time-out the work is cancelled if it has not started; if it has, it may still finish later, which request
        ids and label times make harmless."""
        future = self._workers.submit(work)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DatabaseUnavailable(f"the database did not answer within {timeout:g} s") from None

    def close(self) -> None:
        """Close the pooled connections (the handle reconnects if used again)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None
