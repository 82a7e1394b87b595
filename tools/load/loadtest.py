"""Many users at once: N simulated users in one headless Chromium (a browser context each), each drawing real
strokes, predicting R times and labelling some, against the app on loopback.

    make loadtest                                # 24 users x 5 predictions against a fresh local app + database
    python -m tools.load.loadtest --users 8 --predictions 3
    python -m tools.load.loadtest --url http://127.0.0.1:8501 --database-url postgresql://...   # an app already running
    python -m tools.load.loadtest --replicas 2 --kill-after 20  # = make loadtest REPLICAS=2 KILL_AFTER=20 (Caddy)
    python -m tools.load.loadtest --replicas 3 --roll-after 10 --api-clients 2   # = make drill-rolling

Without --url it starts the app (the real server, the shipped model) on a free loopback port against a throwaway
database and stops both at the end, so it can also report the server's memory and CPU. With --replicas N it starts
N of them behind Caddy (tools/replicas.py) and drives the proxy; --kill-after kills replica 1 mid-run (its users
reload and go on on another replica) and starts it again --down-for seconds later; --roll-after restarts every
replica in turn (SIGTERM, then its successor: a rolling update), while --api-clients post predictions through the
proxy beside the browser users, and every answer of either kind must be one row. Every request goes to
127.0.0.1; the run is bounded by --deadline seconds. Prints one report and writes test-artifacts/loadtest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
from PIL import Image

from tools import browser, pg, replicas
from tools.load.load_users import cpu_seconds, descendants, drive, rss_mb
from training.synthetic import drawn

# After the sessions close: Streamlit keeps a disconnected session for server.disconnectedSessionTTL (30 s in
# .streamlit/config.toml) in case its user comes back; then it is dropped.
SETTLE_SECONDS = 45.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def confirmed_rows(dsn: str, confirmed: list[tuple[int, int]]) -> int:
    """How many of the (id, label) pairs the pages said they saved are in the table with that label (-1:
    the user's "not a digit")."""
    if not confirmed:
        return 0
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM predictions p JOIN unnest(%s::bigint[], %s::smallint[]) AS c(id, label) "
            "ON p.id = c.id AND (p.true_label = c.label OR (c.label = -1 AND p.labelled_not_digit))",
            ([i for i, _ in confirmed], [label for _, label in confirmed]),
        )
        (found,) = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return int(found)


def database_figures(dsn: str, since: float) -> dict[str, Any]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT request_id), count(true_label), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY inference_ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY inference_ms), max(inference_ms) "
            "FROM predictions WHERE created_at >= to_timestamp(%s)",
            (since,),
        )
        rows, distinct, labels, p50, p95, worst = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return {
        "rows": rows,
        "distinct_requests": distinct,
        "labels": labels,
        "server_ms": {"p50": p50, "p95": p95, "max": worst},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--users", type=int, default=24, help="simulated users, all at once")
    parser.add_argument("--predictions", type=int, default=5, help="predictions per user")
    parser.add_argument("--label-every", type=int, default=2, help="label every k-th prediction (0: never)")
    parser.add_argument("--ramp", type=float, default=0.25, help="seconds between two users' arrivals")
    parser.add_argument("--url", help="drive this app instead of starting one (loopback only)")
    parser.add_argument("--database-url", help="with --url: the app's database, to count rows and server times")
    parser.add_argument("--deadline", type=float, default=600, help="give up after this many seconds")
    parser.add_argument("--replicas", type=int, default=0, help="N app processes behind Caddy (0: one app, no proxy)")
    parser.add_argument("--kill-after", type=float, default=0, help="with --replicas: kill replica 1 after S seconds")
    parser.add_argument("--down-for", type=float, default=10, help="seconds the killed replica stays down")
    parser.add_argument("--roll-after", type=float, default=0, help="with --replicas: restart each in turn after S s")
    parser.add_argument("--api-clients", type=int, default=0, help="clients posting to /api/predict meanwhile")
    parser.add_argument(
        "--spread",
        action="store_true",
        help="with --replicas: pin users to replicas in turn (small runs), not at random",
    )
    args = parser.parse_args(argv)
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "https://127.", "https://localhost")):
        raise SystemExit("the load test only talks to this machine (127.0.0.1 or localhost)")

    return args


@dataclass
class Target:
    """What the users drive: a URL, and what the run started behind it (stopped at the end)."""

    url: str
    dsn: str | None = None
    admin: str | None = None
    server_pid: int | None = None
    context: Any = None
    cluster: replicas.Cluster | None = None

    def close(self) -> None:
        if self.context is not None:
            self.context.__exit__(None, None, None)
        if self.admin and self.dsn:
            pg.drop_database(self.admin, self.dsn)


def start_target(args: argparse.Namespace, tmp: Path) -> Target:
    """The app already running at --url, or N replicas behind Caddy, or one fresh app, on a throwaway database."""
    if args.url:
        return Target(args.url, dsn=args.database_url)
    admin = pg.admin_dsn(tmp)
    dsn = pg.create_database(admin, prefix="mnist_load")
    # Every simulated user comes from this machine's one address: the per-client limits would count them as one.
    base = {"DATABASE_URL": dsn, "MODEL_PATH": "", "PREDICT_LIMIT_PER_MINUTE": "0", "UPLOAD_LIMIT_PER_MINUTE": "0",
            "API_LIMIT_PER_MINUTE": "0"}  # fmt: skip
    if args.replicas:
        cluster = replicas.Cluster(args.replicas, base, tmp)
        return Target(cluster.__enter__().url, dsn, admin, context=cluster, cluster=cluster)
    context = browser.running_app({**base, "SPOOL_PATH": str(tmp / "spool.jsonl")})
    url = context.__enter__()
    return Target(url, dsn, admin, server_pid=browser.SERVER_PIDS[url], context=context)


async def run_users(args: argparse.Namespace, target: Target, rss: list[float]) -> dict[str, Any]:
    """The users, with the server's memory sampled twice a second and, with --kill-after, replica 1 killed and
    started again mid-run."""
    cluster = target.cluster

    async def sample() -> None:
        while True:
            if target.server_pid:
                rss.append(rss_mb(target.server_pid))
            if cluster is not None:
                cluster.sample()
            await asyncio.sleep(0.5)

    async def kill_one() -> None:
        assert cluster is not None
        await asyncio.sleep(args.kill_after)
        cluster.kill(0)
        print(f"killed replica 1 (port {cluster.ports[0]}) at {args.kill_after:.0f} s", flush=True)
        await asyncio.sleep(args.down_for)
        await asyncio.to_thread(cluster.restart, 0)
        print("replica 1 is back", flush=True)

    async def roll_all() -> None:
        assert cluster is not None
        await asyncio.sleep(args.roll_after)
        for replica in range(cluster.count):
            await asyncio.to_thread(cluster.roll, replica)
            print(f"rolled replica {replica + 1} at {time.monotonic() - began:.0f} s", flush=True)

    began = time.monotonic()
    pins = cluster.sticky_cookies() if cluster is not None else None  # one per replica
    sampler = asyncio.ensure_future(sample())
    killer = asyncio.ensure_future(kill_one()) if cluster is not None and args.kill_after else None
    roller = asyncio.ensure_future(roll_all()) if cluster is not None and args.roll_after else None
    stop_api = threading.Event()
    api = [asyncio.ensure_future(asyncio.to_thread(api_client, target.url, stop_api)) for _ in range(args.api_clients)]
    try:
        users = drive(
            target.url,
            args.users,
            (args.predictions, args.label_every),
            args.ramp,
            target.server_pid,
            recover=killer is not None or roller is not None,  # a user whose replica went reloads onto another
            cookies=pins if args.spread else None,
            warm_cookies=pins,
        )
        result = await asyncio.wait_for(users, args.deadline)
        for step in (killer, roller):
            if step is not None:
                await step  # every replica is back (and has replayed its spool) before counting
        stop_api.set()
        result["api"] = [outcome for client in api for outcome in await client]
        return result
    finally:
        stop_api.set()
        sampler.cancel()


API_PAUSE_SECONDS = 0.25  # an API client's pace: four predictions a second, as a busy integration sends them
API_RETRIES = 20
RETRIED: dict[int, int] = {}  # status -> how many attempts were sent again (a report figure, not an outcome)


def predict_once(url: str, body: bytes) -> tuple[int, str | None]:
    """(200, request id), or (status, the error's words); 0: no answer at all."""
    request = urllib.request.Request(
        url + "/api/predict", data=body, method="POST", headers={"Content-Type": "image/png"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())["request_id"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:200]
    except OSError:
        return 0, None


def api_client(url: str, stop: threading.Event) -> list[tuple[int, str | None]]:
    """Post pen-drawn digits to /api/predict until `stop`, as a careful integration does: a 502 or 503 (the proxy
    had no replica for it, or the server was busy) is sent again after a pause, up to API_RETRIES times. One
    outcome per prediction: its final (status, request id or the error's words); the retries are counted apart."""
    rng = np.random.default_rng(threading.get_ident() % 2**32)
    outcomes: list[tuple[int, str | None]] = []
    while not stop.wait(API_PAUSE_SECONDS):
        buffer = io.BytesIO()
        Image.fromarray(drawn.pen_digit(int(rng.integers(10)), rng)).save(buffer, "PNG")
        for attempt in range(API_RETRIES + 1):
            status, detail = predict_once(url, buffer.getvalue())
            if status not in (502, 503) or attempt == API_RETRIES:
                break
            RETRIED[status] = RETRIED.get(status, 0) + 1
            time.sleep(1.0)
        outcomes.append((status, detail))
    return outcomes


def api_figures(dsn: str, outcomes: list[tuple[int, str | None]]) -> dict[str, Any]:
    """The API's answers against its rows: every 200's request id stored exactly once."""
    answered = [request_id for status, request_id in outcomes if status == 200]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT request_id::text, count(*) FROM predictions WHERE source = 'api' GROUP BY 1")
        stored = dict(cur.fetchall())
    conn.close()
    return {
        "sent": len(outcomes),
        "answered": len(answered),
        "refused_or_failed": dict(Counter(f"{s} {words}" for s, words in outcomes if s != 200)),
        "attempts_sent_again": {str(status): count for status, count in RETRIED.items()},
        "rows": sum(stored.values()),
        "answered_stored_once": sum(1 for request_id in answered if stored.get(request_id) == 1),
    }


def user_figures(args: argparse.Namespace, out: dict[str, Any]) -> dict[str, Any]:
    made = args.users * args.predictions
    latencies = out["latencies"]
    return {
        "attempted": made,
        "answered": out["answered"],
        "success_percent": round(100 * out["answered"] / made, 1),
        "labelled_by_users": out["labelled"],
        "strokes_redrawn": out["redrawn"],  # the canvas had not sent the strokes: "Draw a digit first"
        "answered_not_a_digit": out["not_digit"],  # the users draw digits: this should stay 0
        "click_to_answer_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p95": round(percentile(latencies, 0.95), 1) if latencies else None,
            "max": round(max(latencies), 1) if latencies else None,
        },
        "errors": out["errors"],
    }


def replica_figures(args: argparse.Namespace, cluster: replicas.Cluster, out: dict[str, Any]) -> dict[str, Any]:
    cluster.sample()
    return {
        "count": args.replicas,
        "peak_connections": {f"replica {i + 1}": cluster.peak[p] for i, p in enumerate(cluster.ports)},
        "server_cpu_seconds": {f"replica {i + 1}": cluster.cpu_seconds(i) for i in range(args.replicas)},
        "connections_at_kill": {f"replica {i + 1}": cluster.at_kill.get(p, 0) for i, p in enumerate(cluster.ports)},
        "killed": bool(cluster.kills),
        "rolled": bool(args.roll_after),
        "pages_reloaded": out["reloaded"],
    }


def measure(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """Run the users against `target`; the report's figures (server memory and CPU when this run started it)."""
    report: dict[str, Any] = {"users": args.users, "predictions_per_user": args.predictions}
    since, pid = time.time() - 1, target.server_pid
    rss: list[float] = []
    server_cpu_start = cpu_seconds({pid}) if pid else 0.0
    own_cpu_start = cpu_seconds(descendants(os.getpid(), pid))
    started = time.perf_counter()
    out = asyncio.run(run_users(args, target, rss))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    if pid:
        report["server_rss_mb_start"] = round(out["rss_start"], 1)
        report["server_rss_mb_peak"] = round(max(rss), 1)
        time.sleep(SETTLE_SECONDS)  # disconnected sessions are dropped after the TTL
        report["server_rss_mb_after_close"] = round(rss_mb(pid), 1)
        report["server_cpu_seconds"] = round(cpu_seconds({pid}) - server_cpu_start, 1)
    report["browser_cpu_seconds"] = round(out["browser_cpu"] - own_cpu_start, 1)
    report.update(user_figures(args, out))
    if target.cluster is not None:
        report["replicas"] = replica_figures(args, target.cluster, out)
    if target.dsn:
        time.sleep(3.0)  # the last writes of the last users, and a spool replay
        report["database"] = database_figures(target.dsn, since)
        report["database"]["confirmed_ids"] = len(out["confirmed"])
        report["database"]["confirmed_ids_found"] = confirmed_rows(target.dsn, out["confirmed"])
        if args.api_clients:
            report["api"] = api_figures(target.dsn, out["api"])
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        target = start_target(args, Path(tmp))
        try:
            report = measure(args, target)
        finally:
            target.close()
    print(json.dumps(report, indent=2))
    db_figures = report.get("database", {})
    api = report.get("api", {"rows": 0, "answered": 0, "answered_stored_once": 0})
    db_ok = True
    if api["answered"]:
        stored_once = api["rows"] == api["answered"] == api["answered_stored_once"]
        print(f"API: {api['answered']} answered, {api['rows']} rows, each once: {'yes' if stored_once else 'NO'}")
    if db_figures:
        page_rows = db_figures["rows"] - api["rows"]
        unique = db_figures["rows"] == db_figures["distinct_requests"]
        print(f"no request stored twice: {'yes' if unique else 'NO'}")
        unshown = page_rows - report["answered"]
        if report.get("replicas", {}).get("killed") or report.get("replicas", {}).get("rolled"):
            # A page whose replica stopped between logging an answer and showing it: stored, never seen; its user
            # predicted again. Logged before shown, by design (nothing shown is ever lost).
            print(f"page rows {page_rows} = {report['answered']} answered + {unshown} stored but never shown")
        else:
            print(f"rows == predictions answered: {'yes' if unshown == 0 else 'NO'}")
        found = db_figures["confirmed_ids_found"] == db_figures["confirmed_ids"]
        print(f"every row a page said it saved is there, with its label: {'yes' if found else 'NO'}")
        db_ok = unique and unshown >= 0 and found
    browser.ARTIFACTS.mkdir(exist_ok=True)
    (browser.ARTIFACTS / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    api_ok = api["rows"] == api["answered"] == api["answered_stored_once"]
    return 0 if report["success_percent"] == 100.0 and not report["errors"] and api_ok and db_ok else 1


if __name__ == "__main__":
    sys.exit(main())
