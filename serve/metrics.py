"""What the operator's monitoring scrapes: this process's predictions, labels and latencies, the spool and the
database, in Prometheus text format at GET /metrics (server.py).

    curl -u operator:$OPERATOR_PASSWORD http://127.0.0.1:8501/metrics

Counters and histograms count what this process did since it started (Prometheus's rate() copes with restarts);
the spool, the database and the model are read when scraped. Each replica is scraped on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from serve import resources
from storage import loop_facts
from storage.database import Database
from storage.pool import DatabaseUnavailable
from storage.schema import SOURCES

__all__ = ["CONTENT_TYPE_LATEST", "OUTCOMES", "REGISTRY", "render"]

OUTCOMES = ("digit", "not_digit", "refused")  # refused: unreadable, empty, too large or over the limit
# Seconds: the model alone takes ~2 ms, an insert ~1 ms; a hung database is cut off at DB_WRITE_TIMEOUT (~1 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

disable_created_metrics()  # no *_created series: start times Prometheus does not need, doubling every counter
REGISTRY = CollectorRegistry()
predictions = Counter(
    "mnist_predictions",
    "Predictions answered or refused, by source and outcome",
    ["source", "outcome"],
    registry=REGISTRY,
)
labels = Counter("mnist_labels", "Labels (true answers) users gave, by source", ["source"], registry=REGISTRY)
inference_seconds = Histogram(
    "mnist_inference_seconds", "Decode, preprocess and model per prediction", ["source"], buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)  # fmt: skip
db_write_seconds = Histogram(
    "mnist_db_write_seconds", "Logging one prediction (to PostgreSQL, or the spool when it is away)",
    buckets=LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
model_info = Info("mnist_model", "The model this process serves", registry=REGISTRY)
for _source in SOURCES:  # every series exists from the start: a rate over a counter that appears late is wrong
    labels.labels(_source)
    inference_seconds.labels(_source)
    for _outcome in OUTCOMES:
        predictions.labels(_source, _outcome)


def answered(source: str, is_digit: bool, inference_ms: float | None) -> None:
    predictions.labels(source, "digit" if is_digit else "not_digit").inc()
    if inference_ms is not None:
        inference_seconds.labels(source).observe(inference_ms / 1000)


def refused(source: str) -> None:
    predictions.labels(source, "refused").inc()


def labelled(source: str) -> None:
    labels.labels(source).inc()


@contextmanager
def timed_write() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        db_write_seconds.observe(time.perf_counter() - started)


class StateCollector:
    """Read at each scrape: the spool's depth and the age of its oldest write, and whether PostgreSQL answers."""

    def __init__(self, database: Callable[[], Database]) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        database = self.database()
        spool = database.spool
        yield GaugeMetricFamily("mnist_spool_depth", "Writes waiting in the spool for the database", spool.pending())
        yield GaugeMetricFamily("mnist_spool_bytes", "Bytes of writes waiting in the spool", spool.size())
        if spool.max_bytes is not None:  # at it, writes are refused (503, a message on the page): alerted at 80%
            yield GaugeMetricFamily("mnist_spool_max_bytes", "The spool's cap (SPOOL_MAX_MB)", spool.max_bytes)
        age = spool.oldest_age()
        yield GaugeMetricFamily(
            "mnist_spool_oldest_age_seconds",
            "Age of the oldest write waiting in the spool",
            age if not math.isnan(age) else -1,
        )
        try:
            database.ensure_ready()  # bounded: at most DB_WRITE_TIMEOUT (the first run: DB_MIGRATE_TIMEOUT)
            labelled, right = database.feedback_totals()
            up = 1.0
        except DatabaseUnavailable:
            up = 0.0
        yield GaugeMetricFamily("mnist_database_up", "1 when PostgreSQL answers with the schema in place", up)
        if up:  # the whole table's figures (every replica reports the same): the dashboard's feedback accuracy
            yield GaugeMetricFamily("mnist_feedback_labelled", "Predictions with a user's answer (all time)", labelled)
            yield GaugeMetricFamily("mnist_feedback_right", "Of those, the ones the app answered right", right)
            yield from loop_state(database)


def loop_state(database: Database) -> Iterator[Metric]:
    """The loop's newest scheduled check (make loop), for its alerts: when, and whether it needs the operator."""
    try:
        last = loop_facts.last_check(database) or {}
    except DatabaseUnavailable:
        return
    decision = last.get("decision", "")
    yield GaugeMetricFamily(
        "mnist_loop_last_check_timestamp_seconds", "When make loop last checked (0: never)", last.get("checked_at", 0)
    )
    yield GaugeMetricFamily(
        "mnist_loop_candidate_waiting",
        "1 when a candidate waits for make promote",
        float(decision == loop_facts.WAITING),
    )
    yield GaugeMetricFamily(
        "mnist_loop_check_failed",
        "1 when the last check failed or its candidate was refused",
        float(decision in loop_facts.TROUBLE),
    )


REGISTRY.register(StateCollector(resources.database))


def render(model_version: str | None) -> bytes:
    """The exposition text: every metric above, the state read now."""
    model_info.info({"version": model_version or "unknown"})
    return generate_latest(REGISTRY)
