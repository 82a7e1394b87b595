"""Real-browser helpers: start the app on a free port, drive Debian's Chromium with Playwright, draw strokes.

Chromium comes from the system (`apt-get install chromium`), never from `playwright install`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.processes import stop

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}  # the viewports the page is judged in: a phone and a laptop
LAPTOP = {"width": 1280, "height": 800}
Point = tuple[float, float]
Stroke = Sequence[Point]

# Digits as strokes in canvas pixels (280x280), drawn the way people draw them: thick, not centred, any size.
DIGITS: dict[int, list[list[Point]]] = {
    1: [[(150, 45), (152, 120), (153, 190), (154, 240)]],
    7: [[(70, 60), (140, 58), (215, 60), (180, 120), (150, 180), (130, 245)]],
    0: [
        [
            (140, 40),
            (95, 60),
            (75, 140),
            (95, 220),
            (140, 245),
            (185, 220),
            (205, 140),
            (185, 60),
            (140, 40),
            (120, 48),
        ]
    ],
    # Starts in the top-right band where the canvas toolbar used to swallow strokes (issue 7).
    5: [
        [(225, 14), (160, 14), (95, 16)],
        [(95, 16), (88, 80), (90, 125), (150, 110), (200, 135), (210, 190), (180, 240), (120, 250), (80, 225)],
    ],
}


def number_strokes(number: str, scale: float = 0.55) -> list[list[Point]]:
    """`number`'s digits (each one of DIGITS) written side by side across the canvas, each `scale` times its size,
    centred in its share of the width: the way people write "17" or "105"."""
    slot = 280 / len(number)
    strokes = []
    for place, digit in enumerate(number):
        shape = DIGITS[int(digit)]
        xs = [x for stroke in shape for x, _ in stroke]
        middle = (min(xs) + max(xs)) / 2
        centre = slot * (place + 0.5)
        strokes += [[(centre + (x - middle) * scale, 140 + (y - 140) * scale) for x, y in stroke] for stroke in shape]
    return strokes


# Not digits, drawn as people draw them when they try the app: letters and a doodle.
NOT_DIGITS: dict[str, list[list[Point]]] = {
    "A": [[(60, 240), (140, 40), (220, 240)], [(95, 165), (185, 165)]],
    "H": [[(70, 40), (72, 240)], [(210, 40), (208, 240)], [(72, 140), (208, 138)]],
    "star": [[(140, 30), (170, 110), (250, 110), (185, 160), (210, 245), (140, 195), (70, 245), (95, 160), (30, 110),
              (110, 110), (140, 30)]],
}  # fmt: skip


def chromium_path() -> str | None:
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).exists() else None


# As the image runs the server (Dockerfile ENV): glibc keeps one malloc arena per thread by default, and Streamlit
# runs every session's script in a thread of its own, so freed session memory stayed fragmented across arenas.
# FORWARDED_ALLOW_IPS empty: uvicorn rewrites no peer from X-Forwarded-For; TRUSTED_PROXIES alone decides.
SERVER_ENV = {"MALLOC_ARENA_MAX": "2", "FORWARDED_ALLOW_IPS": ""}
SERVER_PIDS: dict[str, int] = {}  # url -> pid of the streamlit server running_app started there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_app(env: Mapping[str, str | None], script: str = "server.py", port: int | None = None) -> Iterator[str]:
    """Start `streamlit run script` (the page and its export route, as the image runs it) on `port` (default: a free
    one); yield its URL once /_stcore/health answers. A variable set to None in `env` is left unset."""
    port = port or free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"streamlit-{port}.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT,
        env={k: v for k, v in {**os.environ, **SERVER_ENV, **env}.items() if v is not None},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = process.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (see {ARTIFACTS}/streamlit-{port}.log)")
            time.sleep(0.2)
        yield url
    finally:
        SERVER_PIDS.pop(url, None)
        stop(process)
        log.close()


def interpolate(stroke: Stroke, step: float = 6.0) -> list[Point]:
    """Dense points along the polyline, as a real pointer reports them."""
    points: list[Point] = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        n = max(1, int(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / step))
        points += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
    return points


def canvas_box(page: Any) -> dict[str, float]:
    canvas = page.locator("canvas.upper-canvas").first  # Fabric.js: the layer that takes the pointer
    canvas.wait_for(state="visible", timeout=30_000)
    box = canvas.bounding_box()
    assert box is not None
    return dict(box)


def mouse_strokes(page: Any, strokes: Sequence[Stroke]) -> None:
    """Draw with the mouse; each stroke is pressed the instant the pointer arrives (no hover first)."""
    box = canvas_box(page)
    for stroke in strokes:
        points = interpolate(stroke)
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()
    page.wait_for_timeout(300)  # the canvas sends its image on pointer up


def touch_strokes(page: Any, strokes: Sequence[Stroke]) -> None:
    """Draw with a finger: CDP Input.dispatchTouchEvent (Playwright has no touch-drag helper). A tap has no hover."""
    box = canvas_box(page)
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = interpolate(stroke)
        x, y = box["x"] + points[0][0], box["y"] + points[0][1]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for px, py in points[1:]:
            cdp.send(
                "Input.dispatchTouchEvent",
                {"type": "touchMove", "touchPoints": [{"x": box["x"] + px, "y": box["y"] + py}]},
            )
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()
    page.wait_for_timeout(300)


def metric_value(page: Any, label: str, timeout: float = 20_000) -> str:
    label_exactly = page.locator('[data-testid="stMetricLabel"]').get_by_text(label, exact=True)
    metric = page.locator('[data-testid="stMetric"]').filter(has=label_exactly).first
    metric.wait_for(timeout=timeout)
    return str(metric.locator('[data-testid="stMetricValue"]').inner_text()).strip()
