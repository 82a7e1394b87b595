"""Benchmarks behind BENCHMARKS.md: inference latency, database writes/reads, page response time.

    make bench                       # all three
    python -m tools.bench.benchmark inference db page

Figures are printed and saved to test-artifacts/bench.json. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw


from tools import browser
import db
from tools import pg
import utils


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": round(pick(0.5), 3), "p99_ms": round(pick(0.99), 3)}


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def canvas_seven() -> np.ndarray:
    """A 280x280 RGBA canvas with a thick white "7", as st_canvas returns it."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(image).line([(70, 60), (215, 60), (130, 245)], fill=(255, 255, 255, 255), width=20)
    return np.asarray(image)


def canvas_number() -> np.ndarray:
    """The same canvas with "1704" written across it, a little space between the digits (the page reads a number)."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    white = (255, 255, 255, 255)
    pen.line([(35, 100), (35, 180)], fill=white, width=12)  # 1
    pen.line([(70, 100), (115, 100), (85, 180)], fill=white, width=12)  # 7
    pen.ellipse((135, 100, 180, 180), outline=white, width=12)  # 0
    pen.line([(225, 100), (205, 150), (250, 150)], fill=white, width=12)  # 4: an open one, two strokes
    pen.line([(240, 120), (240, 180)], fill=white, width=12)
    return np.asarray(image)


def classify_percentiles(model: torch.nn.Module, canvas: np.ndarray) -> dict[str, float]:
    """preprocess + classify of `canvas` (what the page calls: digits and "not a digit"), after a warm-up."""
    run = lambda: utils.classify(model, canvas)  # noqa: E731
    timed(run, 50)
    return percentiles(timed(run, 2000))


def bench_inference() -> dict[str, Any]:
    model = utils.load_model()
    canvas = canvas_seven()
    results: dict[str, Any] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results[f"preprocess+classify, {threads} thread(s)"] = classify_percentiles(model, canvas)
    torch.set_num_threads(1)
    number = canvas_number()
    assert utils.read_number(model, number).number == "1704", "the benchmark's number is read as written"
    for name, drawing in (("a 4-digit number", number), ("one digit", canvas)):  # side by side, in one run
        read = lambda: utils.read_number(model, drawing)  # noqa: E731
        timed(read, 50)
        results[f"preprocess+read_number, {name}, 1 thread"] = percentiles(timed(read, 2000))
    results["preprocess only"] = percentiles(timed(lambda: utils.preprocess_image(canvas), 2000))
    unfused = utils.load_checkpoint(utils.DEFAULT_MODEL_PATH).model  # batch norms kept, as training sees it
    results["preprocess+classify, 1 thread, batch norm not folded"] = classify_percentiles(unfused, canvas)
    return results


def bench_db() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        admin = pg.admin_dsn(Path(tmp))
        dsn = pg.create_database(admin, prefix="mnist_bench")
        try:
            database = db.Database(dsn, spool_path=Path(tmp) / "spool.jsonl")
            database.init_db()
            png = utils.to_png(utils.preprocess_image(canvas_seven()))
            probs = [0.1] * 10
            timed(lambda: database.log_prediction(7, 0.9, probs, png, "bench"), 50)
            writes = percentiles(timed(lambda: database.log_prediction(7, 0.9, probs, png, "bench"), 2000))
            database._run(  # fill to 100k rows quickly (server-side), with labels on half of them
                lambda cur: cur.execute(
                    "INSERT INTO predictions (created_at, predicted_digit, confidence, probabilities, image, "
                    "model_version, true_label) SELECT now() - g * interval '1 second', mod(g, 10), 0.9, %s, %s, "
                    "'bench', CASE WHEN mod(g, 2) = 0 THEN mod(g, 10) END FROM generate_series(1, %s) g",
                    (probs, png, 100_000 - 2050),
                )
            )
            database._run(lambda cur: cur.execute("ANALYZE predictions"))
            history = percentiles(timed(lambda: database.get_prediction_history(100), 300))
            filtered = percentiles(timed(lambda: database.get_prediction_history(100, digit=3, correct=True), 300))
            stats = percentiles(timed(database.get_stats, 30))
            rows = database._run(lambda cur: (cur.execute("SELECT count(*) AS n FROM predictions"), cur.fetchone())[1])
            database.close()
        finally:
            pg.drop_database(admin, dsn)
    return {
        "log_prediction (2,000 writes)": writes,
        f"get_prediction_history(100), {rows['n']:,} rows": history,
        "get_prediction_history(100, digit=3, correct=True)": filtered,
        "get_stats()": stats,
    }


CLICK_TO_VISIBLE_JS = """
async () => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Predict');
  const visible = () => [...document.querySelectorAll('[data-testid="stMetricLabel"]')]
      .some(m => m.innerText.trim() === 'Prediction');
  return await new Promise(resolve => {
    const start = performance.now();
    const observer = new MutationObserver(() => {
      if (visible()) { observer.disconnect(); resolve(performance.now() - start); }
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
    button.click();
  });
}
"""


def page_sample(page: Any) -> float:
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function(
        "() => ![...document.querySelectorAll('[data-testid=\"stMetricLabel\"]')]"
        ".some(m => m.innerText.trim() === 'Prediction')",
        timeout=15_000,
    )
    page.wait_for_timeout(300)
    browser.mouse_strokes(page, browser.DIGITS[7])
    page.wait_for_timeout(300)
    return float(page.evaluate(CLICK_TO_VISIBLE_JS))


def bench_page(draws: int = 20) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    path = browser.chromium_path()
    if path is None:
        return {"skipped": "Chromium not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        admin = pg.admin_dsn(Path(tmp))
        dsn = pg.create_database(admin, prefix="mnist_bench")
        env = {"DATABASE_URL": dsn, "SPOOL_PATH": str(Path(tmp) / "spool.jsonl"), "MODEL_PATH": ""}
        try:
            with (
                browser.running_app(env, os.environ.get("BENCH_APP", "server.py")) as app_url,
                browser.running_app(env, "tools/bench/bench_page.py") as trivial_url,
            ):
                with sync_playwright() as p:
                    chromium = p.chromium.launch(executable_path=path, args=browser.CHROMIUM_ARGS)
                    pages = {}
                    for name, url in (("app", app_url), ("trivial", trivial_url)):
                        page = chromium.new_context(viewport={"width": 1100, "height": 1000}).new_page()
                        page.goto(url)
                        browser.canvas_box(page)
                        page_sample(page)  # warm-up (model load, first render)
                        pages[name] = page
                    samples: dict[str, list[float]] = {"app": [], "trivial": []}
                    for _ in range(draws):  # interleaved, so drift on the machine hits both alike
                        for name, page in pages.items():
                            samples[name].append(page_sample(page))
                    chromium.close()
        finally:
            pg.drop_database(admin, dsn)
    app_p50 = statistics.median(samples["app"])
    trivial_p50 = statistics.median(samples["trivial"])
    return {
        "Predict click -> prediction visible, app": percentiles(samples["app"]),
        "same on the trivial canvas page": percentiles(samples["trivial"]),
        "ratio app/trivial (p50)": round(app_p50 / trivial_p50, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    benches = {"inference": bench_inference, "db": bench_db, "page": bench_page}
    parser.add_argument("which", nargs="*", choices=[*benches, []], help="which benchmarks (default: all)")
    args = parser.parse_args()
    results = {}
    for name in args.which or list(benches):
        print(f"== {name}", flush=True)
        results[name] = benches[name]()
        for label, figures in results[name].items():
            print(f"  {label}: {figures}")
    browser.ARTIFACTS.mkdir(exist_ok=True)
    (browser.ARTIFACTS / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
