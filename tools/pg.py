"""Real PostgreSQL servers for the tests: a throwaway database per run, and a private server that can be stopped.

`TEST_DATABASE_URL` names an admin DSN on a server where the tests may CREATE DATABASE (CI: the machine's
PostgreSQL on 127.0.0.1:5432). Without it, an embedded server (the `pgserver` package) is started in a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgserver
import psycopg2
import psycopg2.extensions


class PrivateServer:
    """A PostgreSQL server of our own (pgserver, in `pgdata`) that a test may stop and start again."""

    def __init__(self, pgdata: Path) -> None:
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")

    @property
    def dsn(self) -> str:
        return str(self.server.get_uri())

    def stop(self) -> None:
        pg_ctl = pgserver.pg_ctl  # type: ignore[attr-defined]  # re-exported by pgserver's star import
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)
        except subprocess.CalledProcessError:
            # Seen once on a loaded machine after a SIGSTOP/SIGCONT drill: the fast stop gave up waiting for a
            # backend. Test data only, so stop it the hard way (as a power cut would) rather than fail the test.
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def pids(self) -> list[int]:
        """The postmaster and every backend it forked (what a frozen VM or stalled disk would stop)."""
        postmaster = int((Path(self.server.pgdata) / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:  # field 4 of /proc/PID/stat: the parent's pid
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> list[int]:
        """SIGSTOP the server: it still accepts TCP connections (the kernel does) but answers nothing."""
        pids = self.pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """A statement's rows, read over a connection of its own (what really landed)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        found = cur.fetchall()
    conn.close()
    return found


def count_rows(dsn: str) -> int:
    """Rows in the predictions table, read over a connection of its own (what really landed)."""
    return int(query(dsn, "SELECT count(*) FROM predictions")[0][0])


def with_dbname(dsn: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(dsn)
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


def admin_dsn(tmp_root: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or PrivateServer(tmp_root / "pgdata").dsn


def create_database(admin: str, prefix: str = "mnist_test") -> str:
    """CREATE a uniquely named database on the admin server; returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')  # name is ours, not user input
    conn.close()
    return with_dbname(admin, name)


@contextlib.contextmanager
def throwaway_database(prefix: str) -> Iterator[tuple[str, Path]]:
    """A fresh database on `TEST_DATABASE_URL`'s server (or an embedded one) and a temporary folder beside it, both
    gone afterwards: what the drills run in."""
    with tempfile.TemporaryDirectory() as tmp:
        admin = admin_dsn(Path(tmp))
        dsn = create_database(admin, prefix=prefix)
        try:
            yield dsn, Path(tmp)
        finally:
            drop_database(admin, dsn)


def drop_database(admin: str, dsn: str) -> None:
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # the test's own throwaway database
    conn.close()
