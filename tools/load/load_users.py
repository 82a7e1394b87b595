"""The simulated users of the load test: each a browser context that opens the page, draws real strokes, presses
Predict, labels some answers and clears, as a person would; and the process figures (memory, CPU) read from /proc.

    python -m tools.load.loadtest --users 8 --predictions 3     # drives these users
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from pathlib import Path
from typing import Any

from tools import browser

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


async def label_answer(page: Any, answer: str, out: dict[str, Any]) -> None:
    """Confirm the answer with the panel's "yes" button; note the row the page says it saved, to check later."""
    not_digit = not answer.isdigit()
    yes = "Right, it's not a digit" if not_digit else f"Yes, it's {answer}"
    await page.get_by_role("button", name=yes).click(timeout=30_000)
    saved = page.get_by_text("Thanks! Saved not a digit" if not_digit else "Thanks! Saved true label")
    await saved.wait_for(timeout=30_000)
    out["labelled"] += 1
    found = re.search(r"prediction #(\d+)", await saved.inner_text())
    if found:  # the row the page says it saved: checked against the database afterwards
        out["confirmed"].append((int(found.group(1)), NOT_DIGIT_LABEL if not_digit else int(answer)))


async def clear_page(page: Any) -> None:
    """Press Clear and wait for a fresh canvas."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").first
    await page.get_by_role("button", name="Clear").click()
    await metric.wait_for(state="detached", timeout=30_000)
    await page.get_by_text("Draw a digit, then press Predict").wait_for(timeout=30_000)
    await page.locator("canvas.upper-canvas").first.wait_for(state="visible", timeout=30_000)
    await page.wait_for_timeout(500)  # the new canvas finishes mounting before the next stroke


async def predict_once(
    page: Any, url: str, rng: random.Random, out: dict[str, Any], label: bool, recover: bool
) -> None:
    """One prediction (labelled when `label`). With `recover`, a page whose server went away is reloaded and the
    prediction tried again, up to 3 times, unless its answer was already shown (and so stored)."""
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
            out["not_digit"] += not answer.isdigit()  # "This doesn't look like a digit" (counted, not expected)
            if label:
                await label_answer(page, answer, out)
            await clear_page(page)
            return
        except Exception:
            if not recover:
                out["failed"] += 1
                return
            if attempt == 2:
                raise
            out["reloaded"] += 1  # its server went away: reload (the proxy sends it to another replica)
            await open_canvas(page, url)
            if answered:
                return


async def user(
    chromium: Any,
    url: str,
    number: int,
    predictions: tuple[int, int],
    out: dict[str, Any],
    recover: bool = False,
    cookies: list[dict[str, str]] | None = None,
) -> None:
    """One person: open the page, then draw, Predict, (sometimes) label, Clear; `predictions` = (how many, label
    every k-th). With `recover`, a page that does not come up, or whose server goes away, is reloaded."""
    count, label_every = predictions
    rng = random.Random(number)
    context = await chromium.new_context(viewport={"width": 1280, "height": 800})
    if cookies:  # --spread: user n starts pinned to replica n mod N
        await context.add_cookies([cookies[number % len(cookies)]])
    page = await context.new_page()
    try:
        for attempt in range(3 if recover else 1):  # a page that did not come up is reloaded, as a person would
            try:
                await open_canvas(page, url)
                break
            except Exception:
                if attempt == (2 if recover else 0):
                    raise
                out["reloaded"] += 1
        for i in range(count):
            await predict_once(page, url, rng, out, bool(label_every) and i % label_every == 0, recover)
    except Exception as exc:  # one user's trouble is reported, not fatal to the run
        out["errors"].append(f"user {number}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        await context.close()


async def warm_up(chromium: Any, url: str, cookies: list[dict[str, str]] | None) -> None:
    """The first visit to a process loads its model: not part of anybody's wait. One visit per replica (each pinned
    by its sticky cookie), or one to the single server."""
    targets: list[dict[str, str] | None] = list(cookies) if cookies else [None]
    for cookie in targets:
        warm: Any = await chromium.new_context()
        if cookie:
            await warm.add_cookies([cookie])
        warm_page = await warm.new_page()
        await warm_page.goto(url, timeout=120_000)
        await warm_page.locator("canvas.upper-canvas").first.wait_for(state="visible", timeout=120_000)
        await warm.close()


async def drive(
    url: str,
    users: int,
    predictions: tuple[int, int],
    ramp: float,
    server_pid: int | None,
    recover: bool = False,
    cookies: list[dict[str, str]] | None = None,
    warm_cookies: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """`users` users arriving `ramp` seconds apart, each making `predictions` = (how many, label every k-th); the
    run's counts, latencies and errors."""
    from playwright.async_api import async_playwright

    path = browser.chromium_path()
    if path is None:
        raise SystemExit("Chromium not found: apt-get install chromium (or set CHROMIUM_PATH)")
    counters = ("answered", "failed", "redrawn", "labelled", "not_digit", "reloaded")
    out: dict[str, Any] = {"latencies": [], "confirmed": [], "errors": [], **{name: 0 for name in counters}}
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=path, args=browser.CHROMIUM_ARGS)

        async def start(n: int) -> None:
            await asyncio.sleep(n * ramp)  # people arrive over a few seconds, not in one instant
            await user(chromium, url, n, predictions, out, recover, cookies)

        await warm_up(chromium, url, warm_cookies)
        out["rss_start"] = rss_mb(server_pid) if server_pid else None
        await asyncio.gather(*(start(n) for n in range(users)))
        out["browser_cpu"] = cpu_seconds(descendants(os.getpid(), server_pid))  # before the browser exits
        await chromium.close()
    return out
