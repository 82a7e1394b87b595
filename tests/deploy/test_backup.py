"""deploy/backup.sh on this machine's real PostgreSQL: a backup that is verified, private and pruned, a failure that
is loud, and a restore drill that gives back what the backup took, row for row.

    pytest tests/deploy/test_backup.py
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import psycopg2

import db
from tools import pg
from config.paths import PROJECT_DIR

ROOT = PROJECT_DIR
SCRIPT = ROOT / "deploy" / "backup.sh"


def run(dsn: str, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {**os.environ, "DATABASE_URL": dsn, "BACKUP_DIR": str(folder), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], env=settings, capture_output=True, text=True, timeout=300)


def table_rows(dsn: str) -> list[tuple[object, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, created_at, predicted_digit, confidence, true_label, image, request_id, source "
                    "FROM predictions ORDER BY id")  # fmt: skip
        rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cur.fetchall()]
    conn.close()
    return rows


def fill(dsn: str, tmp: Path, count: int) -> None:
    handle = db.Database(dsn, spool_path=tmp / "fill-spool.jsonl")
    for n in range(count):
        row = handle.log_prediction(n % 10, 0.9, [0.1] * 10, bytes([n % 256]) * 20, "v", 1.0, n % 7 != 0, 0.1)
        if n % 3 == 0:
            handle.set_true_label(row, n % 10 if n % 2 else db.NOT_A_DIGIT)
    handle.close()


def test_the_backup_is_verified_private_and_restores_row_for_row(admin_dsn: str, tmp_path: Path) -> None:
    source = pg.create_database(admin_dsn, prefix="mnist_backup")
    copy = pg.create_database(admin_dsn, prefix="mnist_restored")
    try:
        fill(source, tmp_path, 240)
        folder = tmp_path / "backups"
        made = run(source, folder)
        assert made.returncode == 0, made.stderr
        (dump,) = sorted(folder.glob("mnist-*.dump"))
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
        status = json.loads((folder / "last-status.json").read_text())
        assert status["ok"] is True and status["rows"] == 240 and status["file"] == dump.name
        drill = run(source, folder, "restore-drill")
        assert drill.returncode == 0 and "240 rows identical" in drill.stderr, drill.stderr
        # Independently of the drill: the dump, restored as DEPLOYMENT.md says, is the table as it was.
        restore = ["pg_restore", "--single-transaction", "--exit-on-error", "--no-owner", f"--dbname={copy}", str(dump)]
        assert subprocess.run(restore, capture_output=True, timeout=120).returncode == 0
        assert table_rows(copy) == table_rows(source)
        restored = db.Database(copy, spool_path=tmp_path / "restored-spool.jsonl")
        assert restored.get_stats()["total"] == 240, "the rollup came back with the rows"
        restored.close()
    finally:
        pg.drop_database(admin_dsn, source)
        pg.drop_database(admin_dsn, copy)


def test_a_failed_backup_is_loud_and_keeps_no_file(tmp_path: Path) -> None:
    hook = tmp_path / "alert.sh"
    hook.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "alerted"}\n')
    hook.chmod(0o755)
    folder = tmp_path / "backups"
    failed = run("postgresql://nobody@127.0.0.1:1/none", folder, BACKUP_ALERT_CMD=str(hook))
    assert failed.returncode == 1 and "FAILED" in failed.stderr
    assert not list(folder.glob("mnist-*")), "no dump, not even a partial one"
    assert json.loads((folder / "last-status.json").read_text())["ok"] is False
    assert "backup failed" in (tmp_path / "alerted").read_text()


def test_retention_keeps_the_newest_and_a_tampered_dump_fails_the_drill(admin_dsn: str, tmp_path: Path) -> None:
    source = pg.create_database(admin_dsn, prefix="mnist_backup")
    try:
        fill(source, tmp_path, 5)
        folder = tmp_path / "backups"
        for _ in range(3):
            assert run(source, folder, BACKUP_KEEP="2").returncode == 0
            time.sleep(1.1)  # one dump per second: the name is its UTC time
        dumps = sorted(folder.glob("mnist-*.dump"))
        assert len(dumps) == 2 and len(list(folder.glob("*.sha256"))) == 2
        with open(dumps[-1], "r+b") as newest:
            newest.seek(200)
            newest.write(b"\x00" * 16)
        drill = run(source, folder, "restore-drill")
        assert drill.returncode == 1 and "checksum" in drill.stderr
    finally:
        pg.drop_database(admin_dsn, source)
