"""PostgreSQL's insert ceiling for this app: how many predictions a second one server stores, through the app's own
insert path (db.Database.log_prediction: validation, the pooled INSERT, the rollup's trigger, the commit) at 1 to 16
writers, and pgbench running the same INSERT beside it (no Python: what the server alone does). The capacity model in
DEPLOYMENT.md (section 11) divides this by each replica's writes a second to say where the database binds.

    make bench-inserts                                   # SECONDS (5) per concurrency, into a throwaway database
    python -m tools.bench.bench_inserts --seconds 1 --writers 1,2     # the smoke size the tests use

Figures go to stdout and test-artifacts/bench-inserts.json; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import db
from config.paths import PROJECT_DIR
from tools import pg

ARTIFACTS = PROJECT_DIR / "test-artifacts"
PROBS = [0.01] * 9 + [0.91]
PGBENCH_INSERT = """\\set digit random(0, 9)
INSERT INTO predictions (predicted_digit, confidence, probabilities, image, model_version, inference_ms,
  is_digit, not_digit_score, source, request_id)
VALUES (:digit, 0.91, ARRAY[0.01,0.01,0.01,0.01,0.01,0.01,0.01,0.01,0.01,0.91], decode(:png, 'hex'), 'bench', 1.4,
  true, 0.02, 'api', gen_random_uuid());
"""


def model_input_png() -> bytes:
    """A 28x28 greyscale PNG like the model inputs the app stores (a stroke or two), made without torch: each writer
    is a process of its own, and importing the model's stack in each would cost more than the writes measured."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:22, 12:16] = 220
    pixels[6:10, 8:20] = 180
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def one_writer(dsn: str, seconds: float, png: bytes) -> tuple[float, int]:
    """One process, as one replica writes: its own handle and pool; (its inserts a second, writes left spooled)."""
    handle = db.Database(dsn, spool_path=Path(tempfile.mkdtemp()) / "spool.jsonl", pool_size=1)
    handle.init_db()
    time.sleep(0.5)  # the others' start-up is not the database's time
    count, started = 0, time.monotonic()
    while time.monotonic() < started + seconds:
        handle.log_prediction(7, 0.91, PROBS, png, "bench", 1.4, True, 0.02, source="api")
        count += 1
    rate = count / (time.monotonic() - started)
    spooled = handle.pending()
    handle.close()
    return rate, spooled


def app_path(dsn: str, writers: int, seconds: float) -> dict[str, Any]:
    """`writers` processes (replicas, each past the GIL of the others) logging predictions as fast as they can.
    Each is `python -m tools.bench.bench_inserts --one-writer`, a process of its own (not multiprocessing, whose
    children re-run the parent's __main__: under pytest, whatever a page test left there)."""
    command = [sys.executable, "-m", "tools.bench.bench_inserts", "--one-writer", dsn, "--seconds", str(seconds)]
    processes = [subprocess.Popen(command, cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True) for _ in range(writers)]
    results = [json.loads(process.communicate(timeout=seconds + 120)[0].splitlines()[-1]) for process in processes]
    return {"writers": writers, "per_second": round(sum(r["per_second"] for r in results), 1),
            "spooled": sum(r["spooled"] for r in results)}  # fmt: skip


def pgbench(dsn: str, clients: int, seconds: float, png: bytes) -> dict[str, Any] | None:
    """The same INSERT from pgbench's C clients (None where pgbench is not installed)."""
    if shutil.which("pgbench") is None:
        return None
    script = Path(tempfile.mkdtemp()) / "insert.sql"
    script.write_text(PGBENCH_INSERT.replace(":png", "'" + png.hex() + "'"))
    command = ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(max(1, round(seconds))),
               "-f", str(script), dsn]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip()}")
    tps = next(line for line in result.stdout.splitlines() if line.startswith("tps ="))
    return {"clients": clients, "per_second": round(float(tps.split("=")[1].split()[0]), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency")
    parser.add_argument("--writers", default="1,2,4,8,16", help="concurrent writers, comma-separated")
    parser.add_argument("--one-writer", metavar="DSN", help="(internal) be one writer: print its figures as JSON")
    args = parser.parse_args(argv)
    if args.one_writer:
        rate, spooled = one_writer(args.one_writer, args.seconds, model_input_png())
        print(json.dumps({"per_second": rate, "spooled": spooled}))
        return 0
    admin = pg.admin_dsn(Path(tempfile.mkdtemp()))
    dsn = pg.create_database(admin, "mnist_bench_inserts")
    png = model_input_png()
    try:
        figures: dict[str, Any] = {"app": [], "pgbench": [], "png_bytes": len(png)}
        for writers in (int(part) for part in args.writers.split(",")):
            figures["app"].append(app_path(dsn, writers, args.seconds))
            bench = pgbench(dsn, writers, args.seconds, png)
            if bench is not None:
                figures["pgbench"].append(bench)
            print(f"{writers:>3} writers: app path {figures['app'][-1]['per_second']:>8,.1f}/s"
                  + (f"   pgbench {bench['per_second']:>8,.1f}/s" if bench else ""), flush=True)  # fmt: skip
        figures["rows"] = pg.count_rows(dsn)
        figures["ceiling_app_per_second"] = max(run["per_second"] for run in figures["app"])
    finally:
        pg.drop_database(admin, dsn)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bench-inserts.json").write_text(json.dumps(figures, indent=2))
    print(
        f"ceiling through the app's path: {figures['ceiling_app_per_second']:,.0f} inserts/s; rows {figures['rows']:,}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
