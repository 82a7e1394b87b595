"""Many users at once: N simulated users in one headless Chromium (a browser context each), each drawing real
strokes, predicting R times and labelling some, against the app on loopback.

    make loadtest                                # 24 users x 5 predictions against a fresh local app + database
    python tests/loadtest.py --users 8 --predictions 3
    python tests/loadtest.py --url http://127.0.0.1:8501 --database-url postgresql://...   # an app already running
    python tests/loadtest.py --replicas 2 --kill-after 20   # = make loadtest REPLICAS=2 KILL_AFTER=20: through Caddy

Without --url it starts the app (the real server, the shipped model) on a free loopback port against a throwaway
database and stops both at the end, so it can also report the server's memory and CPU. With --replicas N it starts
N of them behind Caddy (tests/replicas.py) and drives the proxy; --kill-after kills replica 1 mid-run (its users
reload and go on on another replica) and starts it again --down-for seconds later. Every request goes to
127.0.0.1; the run is bounded by --deadline seconds. Prints one report and writes test-artifacts/loadtest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import browser  # noqa: E402
import pg  # noqa: E402
import replicas  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# After the sessions close: Streamlit keeps a disconnected session for server.disconnectedSessionTTL (30 s in
# .streamlit/config.toml) in case its user comes back; then it is dropped.
SETTLE_SECONDS = 45.0
NOT_DIGIT_LABEL = -1  # in the (row id, label) pairs a page confirmed: the user said "not a digit"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree() -> dict[int, int]:
    """pid -> parent pid for every process we can see."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return parents


def cpu_seconds(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICKS


def descendants(root: int, exclude: int | None) -> set[int]:
    parents = process_tree()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier and pid != exclude}
        frontier = children - found
        found |= children
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def draw_and_predict(page: Any, rng: random.Random, out: dict[str, Any]) -> tuple[str, float] | None:
    """Draw a digit and press Predict until an answer shows (a stroke the busy browser lost is drawn again, as a
    person would); (the answer, click-to-answer ms), or None."""
    canvas = page.locator("canvas.upper-canvas").first
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").first
    nothing_drawn = page.get_by_text("Draw a digit first")
    for attempt in range(3):
        box = await canvas.bounding_box()
        assert box is not None
        digit = rng.choice(list(browser.DIGITS))
        dx, dy = rng.uniform(-20, 20), rng.uniform(-15, 15)
        for stroke in browser.DIGITS[digit]:
            points = browser.interpolate([(x + dx, y + dy) for x, y in stroke])
            await page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
            await page.mouse.down()
            for x, y in points[1:]:
                await page.mouse.move(box["x"] + x, box["y"] + y)
            await page.mouse.up()
        await page.wait_for_timeout(300)  # the canvas sends its image on pointer up
        started = time.perf_counter()
        await page.get_by_role("button", name="Predict", exact=True).first.click()
        if attempt:  # the last attempt's warning goes when this Predict's answer (or a new warning) comes
            with contextlib.suppress(Exception):
                await nothing_drawn.wait_for(state="detached", timeout=10_000)
        try:
            await metric.or_(nothing_drawn).first.wait_for(timeout=30_000)
        except Exception:
            return None
        if await metric.count():
            answer = (await metric.locator('[data-testid="stMetricValue"]').inner_text()).strip()
            return answer, (time.perf_counter() - started) * 1000
        out["redrawn"] += 1
    return None


async def open_canvas(page: Any, url: str) -> None:
    """Load the page until its canvas shows (what a person waits for; not every image and font of the page)."""
    await page.goto(url, timeout=60_000, wait_until="domcontentloaded")
    await page.locator("canvas.upper-canvas").first.wait_for(state="visible", timeout=60_000)


async def user(
    chromium: Any,
    url: str,
    number: int,
    predictions: int,
    label_every: int,
    out: dict[str, Any],
    recover: bool = False,
    cookies: list[dict[str, str]] | None = None,
) -> None:
    """One person: open the page, then draw, Predict, (sometimes) label, Clear, R times. With `recover`, a page whose
    server went away is reloaded and the prediction tried again (up to 3 times), as a person would."""
    rng = random.Random(number)
    context = await chromium.new_context(viewport={"width": 1280, "height": 800})
    if cookies:  # --spread: user n starts pinned to replica n mod N
        await context.add_cookies([cookies[number % len(cookies)]])
    page = await context.new_page()
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").first
    try:
        for attempt in range(3 if recover else 1):  # a page that did not come up is reloaded, as a person would
            try:
                await open_canvas(page, url)
                break
            except Exception:
                if attempt == (2 if recover else 0):
                    raise
                out["reloaded"] += 1
        for i in range(predictions):
            for attempt in range(3 if recover else 1):
                answered = False
                try:
                    shown = await draw_and_predict(page, rng, out)
                    if shown is None:
                        raise TimeoutError("no answer")
                    answer, latency = shown
                    out["latencies"].append(latency)
                    out["answered"] += 1
                    answered = True
                    not_digit = not answer.isdigit()  # "This doesn't look like a digit" (counted, not expected)
                    out["not_digit"] += not_digit
                    if label_every and i % label_every == 0:
                        yes = "Right, it's not a digit" if not_digit else f"Yes, it's {answer}"
                        await page.get_by_role("button", name=yes).click(timeout=30_000)
                        saved = page.get_by_text(
                            "Thanks! Saved not a digit" if not_digit else "Thanks! Saved true label"
                        )
                        await saved.wait_for(timeout=30_000)
                        out["labelled"] += 1
                        found = re.search(r"prediction #(\d+)", await saved.inner_text())
                        if found:  # the row the page says it saved: checked against the database afterwards
                            out["confirmed"].append(
                                (int(found.group(1)), NOT_DIGIT_LABEL if not_digit else int(answer))
                            )
                    await page.get_by_role("button", name="Clear").click()
                    await metric.wait_for(state="detached", timeout=30_000)
                    await page.get_by_text("Draw a digit, then press Predict").wait_for(timeout=30_000)
                    await page.locator("canvas.upper-canvas").first.wait_for(state="visible", timeout=30_000)
                    await page.wait_for_timeout(500)  # the new canvas finishes mounting before the next stroke
                    break
                except Exception:
                    if not recover or attempt == 2:
                        if not recover:
                            out["failed"] += 1
                            break
                        raise
                    out["reloaded"] += 1  # its server went away: reload (the proxy sends it to another replica)
                    await open_canvas(page, url)
                    if answered:  # it was shown (and so stored): not predicted again
                        break
    except Exception as exc:  # one user's trouble is reported, not fatal to the run
        out["errors"].append(f"user {number}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        await context.close()


async def drive(
    url: str,
    users: int,
    predictions: int,
    label_every: int,
    ramp: float,
    server_pid: int | None,
    recover: bool = False,
    cookies: list[dict[str, str]] | None = None,
    warm_cookies: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    path = browser.chromium_path()
    if path is None:
        raise SystemExit("Chromium not found: apt-get install chromium (or set CHROMIUM_PATH)")
    out: dict[str, Any] = {
        "latencies": [],
        "answered": 0,
        "failed": 0,
        "redrawn": 0,
        "labelled": 0,
        "not_digit": 0,
        "reloaded": 0,
        "confirmed": [],
        "errors": [],
    }
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=path, args=browser.CHROMIUM_ARGS)

        async def start(n: int) -> None:
            await asyncio.sleep(n * ramp)  # people arrive over a few seconds, not in one instant
            await user(chromium, url, n, predictions, label_every, out, recover, cookies)

        # The first visit to a process loads its model: not part of anybody's wait. One visit per replica (each
        # pinned by its sticky cookie), or one to the single server.
        targets: list[dict[str, str] | None] = list(warm_cookies) if warm_cookies else [None]
        for cookie in targets:
            warm: Any = await chromium.new_context()
            if cookie:
                await warm.add_cookies([cookie])
            warm_page = await warm.new_page()
            await warm_page.goto(url, timeout=120_000)
            await warm_page.locator("canvas.upper-canvas").first.wait_for(state="visible", timeout=120_000)
            await warm.close()
        out["rss_start"] = rss_mb(server_pid) if server_pid else None
        await asyncio.gather(*(start(n) for n in range(users)))
        out["browser_cpu"] = cpu_seconds(descendants(os.getpid(), server_pid))  # before the browser exits
        await chromium.close()
    return out


def confirmed_rows(dsn: str, confirmed: list[tuple[int, int]]) -> int:
    """How many of the (id, label) pairs the pages said they saved are in the table with that label (NOT_DIGIT_LABEL:
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


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument(
        "--spread",
        action="store_true",
        help="with --replicas: pin users to replicas in turn (small runs), not at random",
    )
    args = parser.parse_args(argv)
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "https://127.", "https://localhost")):
        raise SystemExit("the load test only talks to this machine (127.0.0.1 or localhost)")

    report: dict[str, Any] = {"users": args.users, "predictions_per_user": args.predictions}
    with tempfile.TemporaryDirectory() as tmp:
        admin = dsn = None
        cluster: replicas.Cluster | None = None
        if args.url:
            url, server_pid, dsn = args.url, None, args.database_url
            context: Any = None
        elif args.replicas:
            admin = pg.admin_dsn(Path(tmp))
            dsn = pg.create_database(admin, prefix="mnist_load")
            cluster = context = replicas.Cluster(args.replicas, {"DATABASE_URL": dsn, "MODEL_PATH": ""}, Path(tmp))
            url, server_pid = context.__enter__().url, None
        else:
            admin = pg.admin_dsn(Path(tmp))
            dsn = pg.create_database(admin, prefix="mnist_load")
            env = {"DATABASE_URL": dsn, "SPOOL_PATH": str(Path(tmp) / "spool.jsonl"), "MODEL_PATH": ""}
            context = browser.running_app(env)
            url = context.__enter__()
            server_pid = browser.SERVER_PIDS[url]
        try:
            since = time.time() - 1
            rss: list[float] = []
            server_cpu_start = cpu_seconds({server_pid}) if server_pid else 0.0
            own_cpu_start = cpu_seconds(descendants(os.getpid(), server_pid))

            async def run() -> dict[str, Any]:
                async def sample() -> None:
                    while True:
                        if server_pid:
                            rss.append(rss_mb(server_pid))
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

                pins = cluster.sticky_cookies() if cluster is not None else None  # one per replica
                sampler = asyncio.ensure_future(sample())
                killer = asyncio.ensure_future(kill_one()) if cluster is not None and args.kill_after else None
                try:
                    result = await asyncio.wait_for(
                        drive(
                            url, args.users, args.predictions, args.label_every, args.ramp, server_pid,
                            recover=killer is not None,
                            cookies=pins if args.spread else None,
                            warm_cookies=pins,
                        ),
                        args.deadline,
                    )  # fmt: skip
                    if killer is not None:
                        await killer  # the killed replica is back (and has replayed its spool) before counting
                    return result
                finally:
                    sampler.cancel()

            started = time.perf_counter()
            out = asyncio.run(run())
            report["wall_seconds"] = round(time.perf_counter() - started, 1)
            browser_cpu = out["browser_cpu"] - own_cpu_start
            if server_pid:
                report["server_rss_mb_start"] = round(out["rss_start"], 1)
                report["server_rss_mb_peak"] = round(max(rss), 1)
                time.sleep(SETTLE_SECONDS)  # disconnected sessions are dropped after the TTL
                report["server_rss_mb_after_close"] = round(rss_mb(server_pid), 1)
                report["server_cpu_seconds"] = round(cpu_seconds({server_pid}) - server_cpu_start, 1)
            report["browser_cpu_seconds"] = round(browser_cpu, 1)
            made = args.users * args.predictions
            latencies = out["latencies"]
            report.update(
                attempted=made,
                answered=out["answered"],
                success_percent=round(100 * out["answered"] / made, 1),
                labelled_by_users=out["labelled"],
                strokes_redrawn=out["redrawn"],  # the canvas had not sent the strokes: "Draw a digit first"
                answered_not_a_digit=out["not_digit"],  # the users draw digits: this should stay 0
                click_to_answer_ms={
                    "p50": round(statistics.median(latencies), 1) if latencies else None,
                    "p95": round(percentile(latencies, 0.95), 1) if latencies else None,
                    "max": round(max(latencies), 1) if latencies else None,
                },
                errors=out["errors"],
            )
            if cluster is not None:
                cluster.sample()
                report["replicas"] = {
                    "count": args.replicas,
                    "peak_connections": {f"replica {i + 1}": cluster.peak[p] for i, p in enumerate(cluster.ports)},
                    "server_cpu_seconds": {f"replica {i + 1}": cluster.cpu_seconds(i) for i in range(args.replicas)},
                    "connections_at_kill": {
                        f"replica {i + 1}": cluster.at_kill.get(p, 0) for i, p in enumerate(cluster.ports)
                    },
                    "killed": bool(cluster.kills),
                    "pages_reloaded": out["reloaded"],
                }
            if dsn:
                time.sleep(3.0)  # the last writes of the last users, and a spool replay
                report["database"] = database_figures(dsn, since)
                report["database"]["confirmed_ids"] = len(out["confirmed"])
                report["database"]["confirmed_ids_found"] = confirmed_rows(dsn, out["confirmed"])
        finally:
            if context is not None:
                context.__exit__(None, None, None)
            if admin and dsn:
                pg.drop_database(admin, dsn)
    print(json.dumps(report, indent=2))
    db_figures = report.get("database", {})
    if db_figures:
        ok = db_figures["rows"] == report["answered"] == db_figures["distinct_requests"]
        print(f"rows == predictions answered, no duplicates: {'yes' if ok else 'NO'}")
        found = db_figures["confirmed_ids_found"] == db_figures["confirmed_ids"]
        print(f"every row a page said it saved is there, with its label: {'yes' if found else 'NO'}")
    browser.ARTIFACTS.mkdir(exist_ok=True)
    (browser.ARTIFACTS / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["success_percent"] == 100.0 and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
