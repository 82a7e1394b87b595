"""The outage spool: an append-only, fsync'd JSON-lines file of writes that could not reach the database yet.

    python -c "import spool; print(spool.Spool('data/spool.jsonl').pending())"

db.Database appends a write here when PostgreSQL is down or does not answer in time, and replays the file in order
later. Appends and the removal of replayed lines happen under a thread lock and a file lock (`<spool>.lock`), never
while the database is being talked to, so a hung replay cannot stop a user's write from being kept. Nothing is
created on disk (not even the lock file) until there is something to keep.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Spool:
    """Append, read, and drop the replayed head of one spool file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def append(self, record: dict[str, Any]) -> None:
        """Keep one write durably (fsync'd before this returns)."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._locked():
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())

    def has_writes(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def pending(self) -> int:
        """How many writes wait."""
        try:
            with open(self.path, encoding="utf-8") as lines:
                return sum(1 for line in lines if line.strip())
        except FileNotFoundError:
            return 0

    def lines(self) -> list[str]:
        """A snapshot of the waiting writes, oldest first (raw lines, to replay outside the lock)."""
        if not self.has_writes():
            return []
        with self._locked():
            try:
                return self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            except FileNotFoundError:
                return []

    def drop_head(self, count: int) -> int:
        """Remove the first `count` lines (the replayed ones; appends only ever add at the end) and return how many
        remain. The file is rewritten atomically, or removed when empty."""
        with self._locked():
            try:
                current = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            except FileNotFoundError:
                return 0
            remaining = current[count:]
            if not remaining:
                self.path.unlink(missing_ok=True)
                return 0
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as out:
                out.writelines(remaining)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)
            return len(remaining)

    def reject(self, line: str, why: str) -> None:
        """Set aside a write the database refuses (or a torn line) so that it does not block the ones after it."""
        rejected = self.path.with_name(self.path.stem + ".rejected.jsonl")
        with open(rejected, "a", encoding="utf-8") as out:
            out.write(line if line.endswith("\n") else line + "\n")
            out.flush()
            os.fsync(out.fileno())
        log.error("spooled write set aside in %s: %s", rejected, why)
