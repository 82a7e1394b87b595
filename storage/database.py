"""`Database`: logs predictions and feedback, and reads History and Stats (db.py is its door for the entry points).

    python -c "from storage.database import Database; print(Database().dsn)"

The parts live in storage/: config (where the database is: `DATABASE_URL`, `POSTGRES_*`, or an embedded server),
pool (connections and bounded waits), schema (the tables, the rollup and the SQL), reads (History, export, Stats)
and spool (the outage file). This module holds the writes and the spool's replay.

Nothing a user submits is lost: when the database cannot be reached, or does not answer within `DB_WRITE_TIMEOUT`
(a hung server enforces no timeout of its own, so the wait is bounded here), writes go to a local spool
(storage/spool.py: `data/spool.jsonl`, fsync'd) and are replayed in order, exactly once, by a background thread within
seconds of the database coming back. Every row carries a client-made `request_id` (unique), so a replay, a retry
after an unknown commit outcome, or a hung write that commits late never duplicates a row; labels carry the time
the user gave them, so a late one never overwrites a newer one. A prediction spooled while offline gets a
provisional negative id; feedback given to it follows it into the table.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2

from config.settings import settings
from storage import migrate
from storage.pool import DatabaseUnavailable
from storage.reads import Reads
from storage.records import check_request_id, insert_params, label_record, label_statement, prediction_record
from storage.schema import INSERT_SQL, PRUNE_SQL, UnknownPrediction
from storage.spool import Spool, SpoolFull
from storage.spool import claim as spool_claim

log = logging.getLogger(__name__)


class Database(Reads):
    """A pooled connection to one PostgreSQL database plus the durable spool that covers its outages.

    Thread-safe: Streamlit runs each session in its own thread and shares one `Database` (st.cache_resource).
    """

    def __init__(
        self,
        dsn: str | None = None,
        spool_path: str | Path | None = None,
        pool_size: int | None = None,
        connect_timeout: int | None = None,
        statement_timeout_ms: int | None = None,
        pool_wait_seconds: float = 5.0,
        write_timeout: float | None = None,
        read_timeout: float | None = None,
        replay_interval: float = 2.0,
        migrates: bool | None = None,
    ) -> None:
        super().__init__(dsn, pool_size, connect_timeout, statement_timeout_ms, pool_wait_seconds)
        # SPOOL_PATH names one file (a single process); otherwise each process claims its own in SPOOL_DIR (replicas).
        current = settings()
        configured = spool_path or current.spool_path
        self.spool_path = Path(configured) if configured else spool_claim(current.spool_dir)
        self.spool = Spool(self.spool_path, int(current.spool_max_mb * 2**20))
        self._provisional: dict[int, str] = {}  # provisional (negative) id -> request_id, for offline feedback
        self._replayed: dict[int, int] = {}  # provisional id -> the row's real id, once replayed
        self._schema_ready = False
        self.write_timeout = write_timeout or current.db_write_timeout
        self.read_timeout = read_timeout or current.db_read_timeout
        # The first schema run of a process may migrate a big table (indexes, the rollup's backfill): it gets longer,
        # both as the wait and as its statements' timeout.
        self.migrate_timeout = current.db_migrate_timeout
        # Whether this handle runs the schema's DDL itself (DB_MIGRATE_IN_APP), or waits for `python db.py` to.
        self.migrates = bool(current.db_migrate_in_app) if migrates is None else migrates
        # How long a migration's DDL may wait for a lock before it gives up (and is retried): what other queries
        # queued behind it wait at most.
        self.lock_timeout_ms = current.db_lock_timeout_ms
        self._replay_lock = threading.Lock()  # one replay at a time; others do not wait for it
        self._replay_interval = replay_interval
        self._replayer: threading.Thread | None = None
        self._replayer_lock = threading.Lock()
        self._stop_replay = threading.Event()

    def close(self) -> None:
        """Stop the replayer (its writes stay in the spool for the next replay), then close the pooled connections
        (the handle reconnects if used again)."""
        self._stop_replay.set()
        replayer = self._replayer
        if replayer is not None:
            replayer.join(timeout=2.0)
        self._stop_replay.clear()
        super().close()

    # -- schema ------------------------------------------------------------------------------------------------

    def init_db(self) -> None:
        """Create or migrate the schema (idempotent, additive), then replay any spooled writes."""
        self._schema_ready = False
        self._run(self._ensure_schema_in)
        self.flush_spool()

    # -- writes ------------------------------------------------------------------------------------------------

    def log_prediction(
        self,
        predicted_digit: int,
        confidence: float,
        probabilities: Sequence[float] | None = None,
        image_png: bytes | None = None,
        model_version: str | None = None,
        inference_ms: float | None = None,
        is_digit: bool | None = None,
        not_digit_score: float | None = None,
        visitor: str | None = None,
        *,
        source: str | None = None,
        request_id: str | None = None,
        digits: Sequence[dict[str, Any]] | None = None,
    ) -> int:
        """Store one prediction and return its id (negative and provisional while the database is unreachable).
        `inference_ms`: how long the server took to read the image (preprocess + model), for Stats; `is_digit` and
        `not_digit_score`: the model's "not a digit" verdict and probability (None from a model without one);
        `visitor`: the browser's anonymous id (its History shows the row); `source`: one of SOURCES; `request_id`:
        the row's unique key (made here unless the caller, the API, hands it out to label by); `digits`: a number's
        parts (storage/schema.py says what each holds). The row's time is this call's, the moment the answer is
        shown, however late the write lands (a hang, the spool)."""
        record = prediction_record(
            predicted_digit,
            confidence,
            probabilities,
            image_png,
            model_version,
            inference_ms,
            is_digit,
            not_digit_score,
            visitor,
            source,
            request_id,
            digits,
        )
        try:
            row_id = self._bounded(lambda: self._write_now(record), self.write_timeout)
            assert row_id is not None  # INSERT ... RETURNING always returns the row
            return row_id
        except DatabaseUnavailable as exc:
            # Give the row an id the page can attach feedback to (its time is already the user's, not the replay's).
            provisional = -(int(uuid.UUID(record["request_id"])) % (2**62) + 1)
            record["provisional_id"] = provisional
            self._spool(record, exc)  # SpoolFull at the cap: not kept, and the caller says so
            self._provisional[provisional] = record["request_id"]
            return provisional

    def set_true_label(
        self,
        prediction_id: int,
        true_label: int | str | None,
        labelled_by: str | None = None,
        number: str | None = None,
    ) -> bool:
        """Record (or change, or clear with None) the user's answer on exactly that prediction's row: a digit 0-9,
        or `NOT_A_DIGIT` ("Not a digit"); or, for a number's row, `number` (the digits written, as text). True when
        it is stored, False when it is kept in the spool until the database is back; UnknownPrediction (a
        ValueError) when there is no such row."""
        record = label_record(true_label, labelled_by, number)
        if isinstance(prediction_id, bool) or not isinstance(prediction_id, int):
            raise ValueError(f"prediction_id must be an integer, got {prediction_id!r}.")
        record["id"] = prediction_id
        if prediction_id < 0:
            if prediction_id not in self._provisional:
                raise UnknownPrediction(
                    f"No prediction with id {prediction_id} (provisional ids live only in this process)."
                )
            record["request_id"] = self._provisional[prediction_id]
        return self._write_label(record, f"id {prediction_id}")

    def label_request(
        self, request_id: str, true_label: int | str | None, labelled_by: str | None = None, number: str | None = None
    ) -> bool:
        """`set_true_label` for the row logged under `request_id` (the API's handle on its rows: whoever holds it).
        While the database is unreachable the label is spooled (False) and lands if that row exists."""
        record = label_record(true_label, labelled_by, number)
        record["request_id"] = check_request_id(request_id)
        return self._write_label(record, f"request id {record['request_id']}")

    def _write_label(self, record: dict[str, Any], which: str) -> bool:
        try:
            found = self._bounded(lambda: self._write_now(record), self.write_timeout)
        except DatabaseUnavailable as exc:
            self._spool(record, exc)
            return False
        if found is None:
            raise UnknownPrediction(f"No prediction with {which}.")
        return True

    def _write_now(self, record: dict[str, Any]) -> int | None:
        self._flush_before_write()
        return self._run(lambda cur: self._apply(cur, record))

    def resolve(self, prediction_id: int) -> int:
        """The row id a provisional (spooled) prediction got when it was replayed; the same id until then."""
        return self._replayed.get(prediction_id, prediction_id)

    def _apply(self, cur: Any, record: dict[str, Any]) -> int | None:
        """Apply one write (fresh or replayed) inside a transaction; the id of the affected row, or None."""
        self._ensure_schema_in(cur)
        if record["op"] == "insert":
            cur.execute(INSERT_SQL, insert_params(record))
        else:
            cur.execute(*label_statement(record))
        row = cur.fetchone()
        return int(row["id"]) if row else None

    def ensure_ready(self) -> None:
        """Schema created once per handle, spooled writes replayed when some wait; DatabaseUnavailable if down or
        not answering within the write timeout."""
        if not self._schema_ready:
            _ = self.dsn  # resolved here: starting the embedded server (make run) takes seconds, and is no outage
            self._bounded(self.init_db, self.read_wait())  # the first schema run may take longer than a write
        elif self.spool.has_writes():
            self._start_replayer()
            if self._bounded(self.flush_spool, self.write_timeout) > 0:
                raise DatabaseUnavailable("spooled writes are still waiting")
        else:
            self._bounded(lambda: self._run(lambda cur: cur.execute("SELECT 1")), self.write_timeout)

    def read_wait(self) -> float:
        """How long a read waits: `read_timeout`, or `migrate_timeout` while this handle's schema run is to come."""
        return self.read_timeout if self._schema_ready else max(self.read_timeout, self.migrate_timeout)

    def _ensure_schema_in(self, cur: Any) -> None:
        """Once per handle, before its first read or write: a database already at this schema's version costs one
        read and no lock; otherwise storage/migrate.py upgrades it on a connection of its own (short lock timeout,
        indexes built concurrently) and DatabaseUnavailable says it must wait."""
        if not self._schema_ready:
            if not migrate.is_current(cur):
                if not self.migrates:
                    raise DatabaseUnavailable("the schema is behind this version: waiting for `python db.py` (the Job)")
                migrate.migrate(self.dsn, self._connect_args, self.lock_timeout_ms, int(self.migrate_timeout * 1000))
            self._schema_ready = True

    def check_ready(self, timeout: float) -> None:
        """`ensure_ready`, waited for at most `timeout` seconds (/readyz); DatabaseUnavailable says why not."""
        self._bounded(self.ensure_ready, timeout)

    # -- retention ---------------------------------------------------------------------------------------------

    def prune(self, days: float, batch: int = 5_000) -> int:
        """Delete the predictions older than `days` days, with their images and labels, a batch per transaction;
        the rollup's triggers keep Stats exact. Returns how many rows went."""
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not days > 0:
            raise ValueError(f"days must be a positive number, got {days!r}.")
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
        self.ensure_ready()

        def one_batch(cur: Any) -> int:
            cur.execute(PRUNE_SQL, (before, batch))
            return int(cur.rowcount)

        deleted = 0
        while True:
            gone = self._bounded(lambda: self._run(one_batch), self.migrate_timeout)
            deleted += gone
            if gone < batch:
                return deleted

    # -- the spool ---------------------------------------------------------------------------------------------

    def _spool(self, record: dict[str, Any], reason: Exception) -> None:
        """Keep a write for later; SpoolFull (nothing kept, logged) when the spool is at its cap."""
        try:
            self.spool.append(record)
        except SpoolFull:
            log.error("database unavailable (%s) and the spool is full: a %s was refused", reason, record["op"])
            raise
        log.warning("database unavailable (%s); spooled a %s to %s", reason, record["op"], self.spool_path)
        self._start_replayer()

    def pending(self) -> int:
        """How many writes wait in the spool."""
        return self.spool.pending()

    def _flush_before_write(self) -> None:
        # Spooled writes go first, so that a newer write never lands before an older one.
        if self.spool.has_writes() and self.flush_spool() > 0:
            raise DatabaseUnavailable("older writes are still waiting in the spool")

    def flush_spool(self) -> int:
        """Replay spooled writes in order, each in its own transaction; return how many are still waiting. The spool
        is not locked while the database is talked to, and a replay already under way is not waited for."""
        if not self.spool.has_writes():
            return 0
        if not self._replay_lock.acquire(blocking=False):
            return self.spool.pending()
        try:
            lines = self.spool.lines()
            done = 0
            try:
                for line in lines:
                    self._replay_line(line)
                    done += 1
            except DatabaseUnavailable as exc:
                log.warning("spool replay paused after %d of %d writes: %s", done, len(lines), exc)
            return self.spool.drop_head(done) if done else self.spool.pending()
        finally:
            self._replay_lock.release()

    def _replay_line(self, line: str) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.strip():  # a torn final line from a crash mid-append: that write never returned to its caller
                self.spool.reject(line, "unreadable line")
            return
        try:
            result = self._run(lambda cur: self._apply(cur, record))
        except psycopg2.DatabaseError as exc:  # data the database refuses: set aside, do not block the queue
            self.spool.reject(line, str(exc))
            return
        if record["op"] == "insert" and record.get("provisional_id") is not None and result is not None:
            self._replayed[int(record["provisional_id"])] = result
            log.info("replayed provisional prediction %s as id %s", record["provisional_id"], result)

    def _start_replayer(self) -> None:
        """A background thread that replays the spool every few seconds until it is empty (then it ends)."""
        with self._replayer_lock:
            if self._replayer is None:
                self._replayer = threading.Thread(target=self._replay_loop, name="db-spool-replay", daemon=True)
                self._replayer.start()

    def _replay_loop(self) -> None:
        while not self._stop_replay.wait(self._replay_interval):
            try:
                self.flush_spool()
            except Exception:  # never let the replayer die with writes waiting
                log.exception("spool replay failed")
            with self._replayer_lock:  # checked under the lock: a write spooled now finds this thread still running
                if not self.spool.has_writes():
                    self._replayer = None
                    return
        with self._replayer_lock:
            self._replayer = None
