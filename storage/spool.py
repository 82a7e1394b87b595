"""The outage spool: an append-only, fsync'd JSON-lines file of writes that could not reach the database yet.

    python -c "from storage import spool; print(spool.Spool('data/spool.jsonl').pending())"

db.Database appends a write here when PostgreSQL is down or does not answer in time, and replays the file in order
later. Appends and the removal of replayed lines happen under a thread lock and a file lock (`<spool>.lock`), never
while the database is being talked to, so a hung replay cannot stop a user's write from being kept. Nothing is
created on disk (not even the lock file) until there is something to keep.

Replicas (several app processes sharing one data folder, e.g. `docker compose up --scale app=3` on one volume) each
`claim` a spool file of their own: two processes replaying one file could each drop lines the other appended. A
replica that dies leaves its slot free; the next process to start takes it, or merges it into its own, and replays
what was left there.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)
SLOTS = 64  # replicas per data folder
_claimed: dict[Path, tuple[Path, IO[str]]] = {}  # folder -> (this process's spool, its held owner file)
_claim_lock = threading.Lock()


def slot_name(n: int) -> str:
    return "spool.jsonl" if n == 1 else f"spool-{n}.jsonl"  # slot 1 keeps the single-process name


def _try_own(path: Path) -> IO[str] | None:
    """An exclusive, non-blocking flock on `<spool>.owner`, held while the returned file stays open (the kernel
    releases it when the process dies, however it dies)."""
    owner = open(path.with_name(path.name + ".owner"), "a")
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner.close()
        return None
    return owner


def claim(folder: Path) -> Path:
    """This process's spool file in `folder`, the same for every caller in the process: the first slot no live
    process owns. Then any other unowned slot with writes in it (a replica that died and was not replaced) is merged
    into this one, to be replayed with it."""
    folder = folder.resolve()
    with _claim_lock:
        if folder in _claimed:
            return _claimed[folder][0]
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, SLOTS + 1):
            owner = _try_own(folder / slot_name(n))
            if owner is not None:
                mine = folder / slot_name(n)
                _claimed[folder] = (mine, owner)
                break
        else:
            raise RuntimeError(f"all {SLOTS} spool slots in {folder} are owned by running processes")
        for n in range(1, SLOTS + 1):
            other = folder / slot_name(n)
            if other != mine and Spool(other).has_writes():
                adopted = _try_own(other)
                if adopted is not None:
                    try:
                        moved = Spool(mine).absorb(Spool(other))
                        log.warning("took over %d spooled writes from %s (its process is gone)", moved, other)
                    finally:
                        adopted.close()
        return mine


class SpoolFull(RuntimeError):
    """The database is away and the spool has reached its cap: this write was not kept (the caller says so)."""


class Spool:
    """Append, read, and drop the replayed head of one spool file; safe across threads and processes. `max_bytes`
    caps what `append` lets the file grow to (None: no cap), so an outage cannot fill the disk."""

    def __init__(self, path: Path, max_bytes: int | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
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
        """Keep one write durably (fsync'd before this returns); SpoolFull, and nothing written, past the cap."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._locked():
            if self.max_bytes is not None and self.size() + len(line.encode()) > self.max_bytes:
                raise SpoolFull(
                    f"the database is unreachable and its spool {self.path.name} is full ({self.max_bytes} bytes)"
                )
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())

    def size(self) -> int:
        """Bytes waiting (0 when there is no file)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def has_writes(self) -> bool:
        return self.size() > 0

    def pending(self) -> int:
        """How many writes wait."""
        try:
            with open(self.path, encoding="utf-8") as lines:
                return sum(1 for line in lines if line.strip())
        except FileNotFoundError:
            return 0

    def oldest_age(self, now: dt.datetime | None = None) -> float:
        """Seconds since the oldest waiting write was made (0.0 when none waits): how long the database has been
        missing writes, for the operator's metrics."""
        try:
            with open(self.path, encoding="utf-8") as lines:
                first = next((line for line in lines if line.strip()), None)
        except FileNotFoundError:
            return 0.0
        try:
            record = json.loads(first) if first else {}
            made = dt.datetime.fromisoformat(record.get("created_at") or record["labelled_at"])
        except (ValueError, KeyError, TypeError):  # a torn line: its age is unknown, not zero
            return float("nan")
        return max(((now or dt.datetime.now(dt.timezone.utc)) - made).total_seconds(), 0.0)

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

    def absorb(self, other: Spool) -> int:
        """Move every write waiting in `other` to the end of this spool (fsync'd here before it is removed there);
        returns how many. Their order is kept; replays are idempotent (request ids, label times)."""
        with other._locked():
            try:
                lines = [line for line in other.path.read_text(encoding="utf-8").splitlines(True) if line.strip()]
            except FileNotFoundError:
                lines = []
            if lines:
                with self._locked():
                    with open(self.path, "a", encoding="utf-8") as out:
                        out.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
                        out.flush()
                        os.fsync(out.fileno())
            other.path.unlink(missing_ok=True)
        return len(lines)

    def reject(self, line: str, why: str) -> None:
        """Set aside a write the database refuses (or a torn line) so that it does not block the ones after it."""
        rejected = self.path.with_name(self.path.stem + ".rejected.jsonl")
        with open(rejected, "a", encoding="utf-8") as out:
            out.write(line if line.endswith("\n") else line + "\n")
            out.flush()
            os.fsync(out.fileno())
        log.error("spooled write set aside in %s: %s", rejected, why)
