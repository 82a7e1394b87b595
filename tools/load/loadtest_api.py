"""The HTTP API under load, without a browser: Locust's headless clients against POST /api/predict on loopback,
beside in-process `utils.classify` measured in the same run on the same drawings.

    make loadtest-api                           # 8 clients for 30 s against a fresh app + throwaway database
    python -m tools.load.loadtest_api --users 8 --seconds 30 --replicas 2    # = make loadtest-api REPLICAS=2 (Caddy)
    make loadtest-api SWAP_AFTER=10             # the model file replaced (as make promote does) 10 s into the run

It starts the real server (the shipped model) on a free loopback port, or N replicas behind Caddy, with the API's
per-client limit off (every client is this machine), runs `locust --headless` for --seconds (bounded: it is killed
at --seconds + 60), and stops what it started by PID. It reports predictions/s, p50/p95/p99, errors, whether
rows == requests answered (and >= Locust's successes), per-replica counts (each replica's /metrics), and the ratio
to in-process classification with as many threads as clients. With --swap-after S the servers serve a copy of the
shipped model that is replaced atomically S seconds after the first answer by another file (another version), as a
promotion does: the rows then show both versions, and none is lost or stored twice. Writes
test-artifacts/loadtest-api.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import utils
from tools import browser, pg, replicas
from config.paths import PROJECT_DIR
from training.synthetic import drawn

ROOT = PROJECT_DIR
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def in_process_rate(images: list[Image.Image], threads: int, seconds: float) -> float:
    """Predictions per second of utils.classify on decoded drawings, `threads` at once, over `seconds`."""
    model = utils.load_checkpoint(utils.DEFAULT_MODEL_PATH).model
    utils.classify(model, images[0])  # the first call pays for lazy set-up
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(slot: int) -> None:
        n = slot
        while time.perf_counter() < stop:
            utils.classify(model, images[n % len(images)])
            done[slot] += 1
            n += threads

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - started)


def run_locust(url: str, users: int, seconds: float, out: Path) -> dict[str, Any]:
    """`locust --headless` against `url`; the /api/predict row of its CSV stats."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s", "--host", url, "--csv", str(out / "locust"),
        "--stop-timeout", "5",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(out / "locust.log", "w") as log:
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 60)
    with open(out / "locust_stats.csv", newline="") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    row = rows["/api/predict"]
    return {
        "requests": int(row["Request Count"]),
        "errors": int(row["Failure Count"]),
        "per_second": float(row["Requests/s"]),
        "ms": {q: float(row[f"{q}%"]) for q in ("50", "95", "99")},
        "labels": int(rows.get("/api/predictions/[request_id]/label", {}).get("Request Count", 0)),
    }


def api_rows(dsn: str) -> tuple[int, int, dict[str, int]]:
    """(rows, distinct request ids, rows per model version) of the API's predictions."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT request_id) FROM predictions WHERE source = 'api'")
        count, distinct = cur.fetchone()  # type: ignore[misc]
        cur.execute("SELECT model_version, count(*) FROM predictions WHERE source = 'api' GROUP BY 1 ORDER BY 2 DESC")
        versions = {str(version): int(n) for version, n in cur.fetchall()}
    conn.close()
    return int(count), int(distinct), versions


def write_model(target: Path, note: str) -> None:
    """The shipped weights with `note` in their metadata: another file, so another version; replaced atomically (as
    make promote replaces models/model.pth)."""
    state = torch.load(utils.DEFAULT_MODEL_PATH, map_location="cpu", weights_only=True)
    state["meta"] = {**state["meta"], "note": note}
    partial = target.with_name(target.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, target)


def replica_counts(ports: list[int]) -> list[float]:
    """API predictions each replica answered, from its own /metrics."""
    counts = []
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        counts.append(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "mnist_predictions_total"
                and sample.labels["source"] == "api"
                and sample.labels["outcome"] != "refused"
            )
        )
    return counts


def drawn_pngs(count: int = 50, seed: int = 25) -> list[tuple[int, bytes]]:
    """(digit, PNG bytes) for `count` pen-drawn digits (training.synthetic.drawn), the ten digits in turn: what the
    Locust
    clients send, and what the in-process run classifies."""
    rng = np.random.default_rng(seed)
    made = []
    for n in range(count):
        buffer = io.BytesIO()
        Image.fromarray(drawn.pen_digit(n % 10, rng)).save(buffer, "PNG")
        made.append((n % 10, buffer.getvalue()))
    return made


class Swap(threading.Thread):
    """Replaces the model file `after` seconds past the first API row (Locust takes a while to start its clients):
    the run has answers on both sides of the swap."""

    def __init__(self, dsn: str, model: Path, after: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.model, self.after = dsn, model, after
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if api_rows(self.dsn)[0] > 0:
                    break
            except psycopg2.Error:
                pass  # the table is made by the app's first write
            if self.stop.wait(0.2):
                return
        if not self.stop.wait(self.after):
            write_model(self.model, "after the swap")


def start_swap(swap: Swap | None) -> None:
    if swap is not None:
        swap.start()


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    admin = pg.admin_dsn(tmp)
    dsn = pg.create_database(admin, prefix="mnist_loadapi")
    env = {"DATABASE_URL": dsn, "MODEL_PATH": "", "API_LIMIT_PER_MINUTE": "0", "OPERATOR_PASSWORD": ""}
    swap: Swap | None = None
    if args.swap_after:
        env["MODEL_PATH"] = str(tmp / "model.pth")
        write_model(tmp / "model.pth", "before the swap")
        swap = Swap(dsn, tmp / "model.pth", args.swap_after)
    try:
        if args.replicas:
            with replicas.Cluster(args.replicas, env, tmp) as cluster:
                start_swap(swap)
                locust = run_locust(cluster.url, args.users, args.seconds, tmp)
                per_replica = replica_counts(cluster.ports)
        else:
            with browser.running_app({**env, "SPOOL_PATH": str(tmp / "spool.jsonl")}) as url:
                start_swap(swap)
                locust = run_locust(url, args.users, args.seconds, tmp)
                per_replica = replica_counts([int(url.rsplit(":", 1)[1])])
        rows, distinct, versions = api_rows(dsn)
    finally:
        if swap:
            swap.stop.set()
        pg.drop_database(admin, dsn)
    images = [utils.load_uploaded_image(png) for _, png in drawn_pngs()]
    baseline = in_process_rate(images, args.users, min(args.seconds, 10.0))
    # Locust stops counting at --seconds; answers still in flight then are served and logged, but not counted by
    # it: rows must equal what the servers answered, and cover every success Locust saw.
    answered = int(sum(per_replica))
    successes = locust["requests"] - locust["errors"]
    return {
        "users": args.users,
        "seconds": args.seconds,
        "replicas": args.replicas or 1,
        "api": locust,
        "rows": rows,
        "answered": answered,
        "rows_equal_requests": rows == answered and rows >= successes,
        "distinct_request_ids": distinct,
        "rows_per_model_version": versions,
        "swapped": bool(args.swap_after) and len(versions) == 2,
        "per_replica_predictions": per_replica,
        "in_process_per_second": round(baseline, 1),
        "ratio": round(locust["per_second"] / baseline, 3) if baseline else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=8, help="Locust clients, all at once")
    parser.add_argument("--seconds", type=float, default=30, help="how long they run")
    parser.add_argument("--replicas", type=int, default=0, help="N app processes behind Caddy (0: one app, no proxy)")
    parser.add_argument("--swap-after", type=float, default=0, help="replace the model file after S seconds (0: never)")
    args = parser.parse_args(argv)
    if not (0 < args.users <= 64 and 0 < args.seconds <= 600 and 0 <= args.replicas <= 4):
        raise SystemExit("bounded: 1-64 users, up to 600 s, up to 4 replicas")
    with tempfile.TemporaryDirectory(prefix="loadtest-api-") as tmp:
        figures = measure(args, Path(tmp))
    browser.ARTIFACTS.mkdir(exist_ok=True)
    (browser.ARTIFACTS / "loadtest-api.json").write_text(json.dumps(figures, indent=2) + "\n")
    api = figures["api"]
    print(
        f"{figures['users']} clients x {figures['seconds']:g} s, {figures['replicas']} replica(s): "
        f"{api['per_second']:.1f} predictions/s, p50 {api['ms']['50']:.0f} ms, p95 {api['ms']['95']:.0f} ms, "
        f"p99 {api['ms']['99']:.0f} ms, {api['errors']} errors of {api['requests']}; rows == requests: "
        f"{figures['rows_equal_requests']} ({figures['rows']} rows, {figures['distinct_request_ids']} distinct request "
        f"ids, {figures['answered']} answered; per model version {figures['rows_per_model_version']}); "
        f"per replica {figures['per_replica_predictions']}; "
        f"in-process utils.classify ({figures['users']} threads) {figures['in_process_per_second']:.1f}/s, "
        f"API/in-process {figures['ratio']}"
    )
    once = figures["distinct_request_ids"] == figures["rows"] and (figures["swapped"] or not args.swap_after)
    return 0 if api["errors"] == 0 and figures["rows_equal_requests"] and once else 1


if __name__ == "__main__":
    sys.exit(main())
