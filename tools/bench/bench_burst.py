"""A burst of the worst images the app allows, in parallel through POST /api/predict, against one real server on
loopback (as Compose runs it: MALLOC_ARENA_MAX=2): the process's peak and settled memory, latency, the refusals, and
that every answered prediction is stored exactly once.

    make bench-burst                                   # 8, 16, 32 and 64 parallel images (BURSTS=8,16,32,64)
    python -m tools.bench.bench_burst --bursts 4 --settle 2  # what the smoke test runs

The image is an 8192x3051 PNG (about 90 KB on the wire, 75 MB decoded: the upload limits' longest side) with one
stroke on it. The server starts on a throwaway database and is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from tools import browser, pg


def worst_image() -> bytes:
    """The largest allowed image, mostly blank: small to send, large to decode."""
    image = Image.new("RGB", (8192, 3051), "white")
    ImageDraw.Draw(image).line([(3000, 500), (5000, 500), (3600, 2800)], fill="black", width=300)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def memory_mb(pid: int) -> tuple[int, int]:
    """(resident, peak resident) MB of process `pid`, from /proc."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


@dataclass
class Answer:
    status: int
    seconds: float
    retry_after: str | None


def post(url: str, body: bytes) -> Answer:
    request = urllib.request.Request(f"{url}/api/predict", data=body, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return Answer(response.status, time.perf_counter() - started, None)
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, time.perf_counter() - started, exc.headers.get("Retry-After"))


def burst(url: str, body: bytes, size: int) -> list[Answer]:
    with cf.ThreadPoolExecutor(size) as pool:
        return list(pool.map(lambda _: post(url, body), range(size)))


@dataclass
class Burst:
    parallel: int
    codes: dict[int, int]
    p50_s: float
    p95_s: float
    refused_with_retry_after: int  # 503s that say when to come back
    rss_mb: int
    peak_rss_mb: int

    @classmethod
    def of(cls, answers: list[Answer], memory: tuple[int, int]) -> Burst:
        seconds = sorted(a.seconds for a in answers)
        codes: dict[int, int] = {}
        for answer in answers:
            codes[answer.status] = codes.get(answer.status, 0) + 1
        p50, p95 = seconds[len(seconds) // 2], seconds[max(int(len(seconds) * 0.95) - 1, 0)]
        retry = sum(a.status == 503 and a.retry_after is not None for a in answers)
        return cls(len(answers), codes, round(p50, 2), round(p95, 2), retry, *memory)


@dataclass
class Result:
    image_bytes: int
    idle_rss_mb: int
    bursts: list[Burst]
    settled_rss_mb: int
    answered: int
    stored: int


def run(bursts: list[int], settle: float, admin: str, env: dict[str, str] | None = None) -> Result:
    """Every burst in turn against one server (with `env`'s settings); then the settled memory and the rows against
    the answers."""
    dsn = pg.create_database(admin)
    try:
        with browser.running_app({"DATABASE_URL": dsn, "API_LIMIT_PER_MINUTE": "0", **(env or {})}) as url:
            pid = browser.SERVER_PIDS[url]
            body = worst_image()
            warm = post(url, body)  # the model loaded and one image answered: "idle" is a serving process
            idle = memory_mb(pid)
            rows = [Burst.of(burst(url, body, size), memory_mb(pid)) for size in bursts]
            time.sleep(settle)
            settled = memory_mb(pid)
        answered = sum(row.codes.get(200, 0) for row in rows) + (warm.status == 200)
        return Result(len(body), idle[0], rows, settled[0], answered, pg.count_rows(dsn))
    finally:
        pg.drop_database(admin, dsn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", default="8,16,32,64", help="parallel requests per burst, comma-separated")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to wait before the settled memory")
    args = parser.parse_args(argv)
    admin = os.environ.get("TEST_DATABASE_URL") or pg.admin_dsn(Path("/tmp"))
    result = run([int(n) for n in args.bursts.split(",")], args.settle, admin)
    print(f"worst image: {result.image_bytes:,} bytes; idle RSS {result.idle_rss_mb} MB")
    for row in result.bursts:
        print(row)
    print(f"settled RSS after {args.settle:g} s: {result.settled_rss_mb} MB")
    print(f"answered {result.answered}, stored {result.stored} (each answer stored once: equal)")
    return 0 if result.answered == result.stored else 1


if __name__ == "__main__":
    raise SystemExit(main())
