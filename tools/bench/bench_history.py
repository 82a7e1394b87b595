"""History and Stats on a year of traffic: a million predictions in a throwaway database, timed through db.Database.

    make bench-history                              # 1,000,000 rows (about 2 min to build), figures + query plans
    python -m tools.bench.bench_history --rows 20000      # the smoke size the tests use

The table is built with COPY (not a million INSERTs) after `init_db`, so the rollup triggers see it as the app's
writes would: spread over 365 days, 30 % labelled (2 % of those wrong, 1 % "not a digit"), 3 % flagged "not a digit"
by the model, every row with a 28x28 PNG. Then it times, with p50 over repeated calls: every History filter the
page offers (first page and a page 100 pages deep), Stats, and single inserts. The database is dropped at the end.
Figures go to stdout and test-artifacts/bench-history.json; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


import db
from storage import loop_facts
from storage.trust import Trust
from storage.reads import history_filter
from storage.schema import HISTORY_COLUMNS
from tools import pg
from config.paths import PROJECT_DIR
import utils

ARTIFACTS = PROJECT_DIR / "test-artifacts"
DAYS = 365
LABELLED = 0.30
WRONG_OF_LABELLED = 0.02
NOT_DIGIT_ANSWERS_OF_LABELLED = 0.01
FLAGGED = 0.03
# (name, get_prediction_history keyword arguments): every combination the History page offers
HISTORY_FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("plain", {}),
    ("digit 7", {"digit": 7}),
    ("wrong only", {"correct": False}),
    ("right only", {"correct": True}),
    ("digit 7, wrong only", {"digit": 7, "correct": False}),
    ("digit 7, right only", {"digit": 7, "correct": True}),
    ("not a digit", {"not_digit": True}),
    ("digit 7, not a digit", {"digit": 7, "not_digit": True}),
    ("digits only", {"not_digit": False}),
    ("digit 7, digits only, wrong", {"digit": 7, "not_digit": False, "correct": False}),
]


def sample_pngs(count: int = 64) -> list[str]:
    """PNG model inputs (hex for COPY's bytea text form): strokes of plausible digit size."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        image = np.zeros((28, 28), dtype=np.float32)
        for _ in range(3):
            r, c = rng.integers(6, 22, 2)
            image[r - 2 : r + 3, c - 6 : c + 6] = rng.uniform(0.5, 1.0)
        out.append("\\\\x" + utils.to_png(image).hex())
    return out


def copy_rows(rows: int, seed: int = 1) -> Iterator[str]:
    """COPY text lines for `rows` predictions over the last `DAYS` days."""
    rng = np.random.default_rng(seed)
    pngs = sample_pngs()
    now = dt.datetime.now(dt.timezone.utc)
    chunk = 10_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ages = rng.uniform(0, DAYS * 86_400, n)
        digits = rng.integers(0, 10, n)
        labelled = rng.random(n) < LABELLED
        wrong = rng.random(n) < WRONG_OF_LABELLED
        said_not = rng.random(n) < NOT_DIGIT_ANSWERS_OF_LABELLED
        flagged = rng.random(n) < FLAGGED
        ms = rng.lognormal(np.log(2.0), 0.4, n)
        for i in range(n):
            created = (now - dt.timedelta(seconds=float(ages[i]))).isoformat()
            digit = int(digits[i])
            label, not_digit = "\\N", "f"
            if labelled[i]:
                if said_not[i]:
                    not_digit = "t"
                else:
                    label = str((digit + 1) % 10 if wrong[i] else digit)
            probs = "{" + ",".join("0.91" if d == digit else "0.01" for d in range(10)) + "}"
            yield (
                f"{created}\t{digit}\t0.91\t{probs}\t{pngs[i % len(pngs)]}\tbench\t{label}\t{ms[i]:.3f}\t"
                f"{'f' if flagged[i] else 't'}\t{0.9 if flagged[i] else 0.01}\t{not_digit}\n"
            )


class LineReader:
    """A file-like view of an iterator of lines, for copy_expert (COPY streams; nothing is built in memory)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        want = size if size > 0 else 1 << 20
        while len(self.buffer) < want:
            try:
                self.buffer += next(self.lines).encode()
            except StopIteration:
                break
        out, self.buffer = self.buffer[:want], self.buffer[want:]
        return out

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def build(database: db.Database, rows: int) -> float:
    """init_db, then COPY `rows` rows; returns the seconds it took."""
    database.init_db()
    start = time.perf_counter()
    conn = database._export_connection()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0")
            cur.copy_expert(
                "COPY predictions (created_at, predicted_digit, confidence, probabilities, image, model_version, "
                "true_label, inference_ms, is_digit, not_digit_score, labelled_not_digit) FROM STDIN",
                LineReader(copy_rows(rows)),
            )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE predictions")  # what autovacuum would have done to a year-old table
    finally:
        conn.close()
    return time.perf_counter() - start


def p50_ms(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    fn()  # warm: first call pays for plan caching and cold pages
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2)}


def deep_cursor(database: db.Database, kwargs: dict[str, Any], pages: int, size: int) -> Any:
    """The (created_at, id) after `pages` pages of `size` rows: where a user paging back would be."""
    before = None
    for _ in range(pages):
        rows = database.get_prediction_history(limit=size, before=before, **kwargs)
        if not rows:
            break
        before = (rows[-1]["created_at"], rows[-1]["id"])
    return before


def plans(database: db.Database) -> dict[str, str]:
    """EXPLAIN of the History and Stats queries (the README shows them)."""
    out = {}
    conn = database._export_connection()
    try:
        with conn, conn.cursor() as cur:
            for name, kwargs in HISTORY_FILTERS:
                where, params = history_filter(
                    kwargs.get("digit"), kwargs.get("correct"), kwargs.get("not_digit"), None
                )
                cur.execute(
                    f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) SELECT {HISTORY_COLUMNS} FROM predictions"
                    f"{where} ORDER BY created_at DESC, id DESC LIMIT 50",
                    params,
                )
                out[name] = "\n".join(r[0] for r in cur.fetchall())
            cur.execute(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) SELECT predicted_digit, answer, flagged, sum(n) "
                "FROM prediction_counts GROUP BY 1, 2, 3"
            )
            out["stats (rollup)"] = "\n".join(r[0] for r in cur.fetchall())
    finally:
        conn.close()
    return out


def loop_view_reads(database: db.Database) -> None:
    """What views/loop.py reads (once per five minutes, cached), the labels judged as a retraining set would."""
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    loop_facts.read(database, since, 7, Trust.from_settings())
    loop_facts.weekly(database)
    loop_facts.versions(database)
    loop_facts.last_check(database)
    loop_facts.promotions(database)


def run(rows: int, repeats: int, page: int, show_plans: bool) -> dict[str, Any]:
    admin = os.environ.get("TEST_DATABASE_URL") or pg.admin_dsn(Path("/tmp"))
    dsn = pg.create_database(admin, "mnist_bench_history")
    database = db.Database(dsn, spool_path=ARTIFACTS / "bench-history-spool.jsonl", read_timeout=30.0)
    try:
        seconds = build(database, rows)
        print(f"built {rows:,} rows with COPY in {seconds:.1f}s (rollup kept by the triggers)")
        results: dict[str, Any] = {"rows": rows, "build_seconds": round(seconds, 1), "history": {}}
        for name, kwargs in HISTORY_FILTERS:
            first = p50_ms(lambda: database.get_prediction_history(limit=page, **kwargs), repeats)
            before = deep_cursor(database, kwargs, 100, page)
            deep = p50_ms(lambda: database.get_prediction_history(limit=page, before=before, **kwargs), repeats)
            results["history"][name] = {"first_page": first, "page_101": deep}
            print(
                f"History {name:<22} first page p50 {first['p50_ms']:7.2f} ms   page 101 p50 {deep['p50_ms']:7.2f} ms"
            )
        results["stats"] = p50_ms(database.get_stats, repeats)
        print(f"Stats                          p50 {results['stats']['p50_ms']:7.2f} ms")
        results["loop_view"] = p50_ms(lambda: loop_view_reads(database), max(1, repeats // 4))
        print(f"Stats' loop view (uncached)    p50 {results['loop_view']['p50_ms']:7.2f} ms")
        png = utils.to_png(np.zeros((28, 28), dtype=np.float32))
        results["insert"] = p50_ms(
            lambda: database.log_prediction(3, 0.9, [0.1] * 10, png, "bench", 1.2, True, 0.01), repeats * 4
        )
        results["label"] = p50_ms(lambda: database.set_true_label(rows // 2, 4), repeats * 4)
        print(f"insert (with image, triggers)  p50 {results['insert']['p50_ms']:7.2f} ms")
        print(f"label                          p50 {results['label']['p50_ms']:7.2f} ms")
        stats = database.get_stats()
        results["stats_total_matches"] = stats["total"] == pg.count_rows(dsn)
        print(f"rollup total {stats['total']:,} == count(*): {results['stats_total_matches']}")
        if show_plans:
            results["plans"] = plans(database)
            for name, plan in results["plans"].items():
                print(f"\n-- {name}\n{plan}")
    finally:
        database.close()
        pg.drop_database(admin, dsn)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bench-history.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions to build the table with")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per figure")
    parser.add_argument("--page", type=int, default=100, help="History rows per page (the page's default)")
    parser.add_argument("--plans", action="store_true", help="print EXPLAIN ANALYZE of each query")
    args = parser.parse_args()
    run(args.rows, args.repeats, args.page, args.plans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
