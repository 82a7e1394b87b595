"""Numbers read by inference.number: whole-number and per-digit accuracy by length and spacing, what touching digits
do, whether doodles pass for numbers, and the time of a 4-digit read beside a single digit.

    make bench-numbers                      # 100 numbers per length and spacing, into the model card's table
    python -m tools.bench.bench_numbers --per-cell 20 --lengths 2 4 6

Numbers are MNIST *test* digits re-drawn with the canvas's pen (training.synthetic.numbers), so the model never
trained on them. Spacing: "small gaps" (0.08-0.3 of the height: a little space, as asked), "wide" (0.5-0.8), and
"touching" (the glyphs' boxes abut or overlap a little, so strokes often touch). An answer is "right" when the whole
number is, "refused" when it says which part is not a digit or that digits seem to touch (no number given), and
"wrong" when it gives a number that is not the one written: the one outcome that must stay rare.
Writes test-artifacts/bench-numbers.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

import utils
from config.settings import settings
from inference.number import read_number
from tools import browser
from training.dataset import load_mnist
from training.evaluation.leave_out import CARD, write_block
from training.synthetic import doodles, drawn
from training.synthetic.numbers import number_drawing

CARD_MARKERS = ("<!-- numbers:start -->", "<!-- numbers:end -->")
CONFIDENT = 0.9  # a wrong number given with at least this confidence (every digit's, multiplied) is a confident one
SPACINGS = {"small gaps": (0.08, 0.3), "wide": (0.5, 0.8), "touching": (-0.06, 0.0)}


def cell(model: Any, images: np.ndarray, labels: np.ndarray, length: int, gaps: tuple[float, float], count: int,
         rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    """`count` numbers of `length` digits: how many read right, refused and wrong, and the digits read right."""
    outcome = {"right": 0, "refused": 0, "wrong": 0, "confident_wrong": 0, "digits_right": 0, "digits": 0}
    for _ in range(count):
        picks = rng.choice(len(labels), length, replace=False)
        truth = "".join(str(int(labels[i])) for i in picks)
        drawing = number_drawing([images[i] for i in picks], rng, gap=float(rng.uniform(*gaps)))
        reading = read_number(model, drawing)
        key = "right" if reading.number == truth else "refused" if reading.number is None else "wrong"
        outcome[key] += 1
        outcome["confident_wrong"] += key == "wrong" and reading.confidence >= CONFIDENT
        if len(reading.parts) == length:
            outcome["digits_right"] += sum(p.is_digit and str(p.digit) == t for p, t in zip(reading.parts, truth))
        outcome["digits"] += length
    return outcome


def doodles_as_numbers(model: Any, count: int, rng: np.random.Generator) -> dict[str, int]:
    """Doodles (every picture family) drawn on the canvas: how many read as a number of two digits or more."""
    families = list(doodles.PICTURES)
    numbers = 0
    for n in range(count):
        strokes, aspect = doodles.PICTURES[families[n % len(families)]](rng)
        reading = read_number(model, drawn.pen_drawing(strokes, rng, aspect=aspect))
        numbers += reading.is_number and len(reading.parts) > 1
    return {"doodles": count, "read_as_a_number": numbers}


def timing(model: Any, images: np.ndarray, runs: int, rng: np.random.Generator) -> dict[str, float]:
    """p50 ms of read_number on a 4-digit number and of utils.classify on one canvas-drawn digit, 1 torch thread."""
    number = number_drawing([images[i] for i in range(4)], rng, height=90, gap=0.2)
    single = drawn.canvas_drawing(images[0], rng)
    figures = {}
    for name, work in (
        ("four_digits_ms", lambda: read_number(model, number)),
        ("one_digit_ms", lambda: utils.classify(model, single)),
    ):
        work()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            work()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = round(float(np.median(times)), 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-cell", type=int, default=100, help="numbers per length and spacing")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(range(2, 9)))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--card", action="store_true", help="write the table into the model card (models/README.md)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # as the app classifies
    mnist_dir = settings().mnist_dir
    _, test, _ = load_mnist(str(mnist_dir) if mnist_dir else None)
    images, labels = test.images.squeeze(1).numpy(), test.labels.numpy()
    model = utils.load_model()
    rng = np.random.default_rng(args.seed)
    table = {
        spacing: {length: cell(model, images, labels, length, gaps, args.per_cell, rng) for length in args.lengths}
        for spacing, gaps in SPACINGS.items()
    }
    figures = {"table": table, **doodles_as_numbers(model, 300, rng), **timing(model, images, 300, rng)}
    browser.ARTIFACTS.mkdir(exist_ok=True)
    (browser.ARTIFACTS / "bench-numbers.json").write_text(json.dumps(figures, indent=2) + "\n")
    summary = (
        f"Doodles read as a number: {figures['read_as_a_number']} of {figures['doodles']}. Preprocess + read, p50 "
        f"(1 thread): a 4-digit number {figures['four_digits_ms']} ms, one digit {figures['one_digit_ms']} ms."
    )
    print(markdown(table, args.per_cell) + "\n\n" + summary)
    if args.card:
        write_block(
            CARD_MARKERS, f"`make bench-numbers` (seed {args.seed}):\n\n{markdown(table, args.per_cell)}\n\n{summary}"
        )
        print(f"wrote the numbers table into {CARD}")
    return 0


def markdown(table: dict[str, dict[int, dict[str, Any]]], per_cell: int) -> str:
    lengths = list(next(iter(table.values())))
    lines = [f"| {per_cell} numbers each | " + " | ".join(f"{n} digits" for n in lengths) + " |",
             "|---|" + "---|" * len(lengths)]  # fmt: skip
    for spacing, row in table.items():
        right = [
            f"{c['right'] / per_cell:.0%} right, {c['wrong']} wrong ({c['confident_wrong']} confident)"
            for c in row.values()
        ]
        lines.append(f"| {spacing}: whole number | " + " | ".join(right) + " |")
        digits = [f"{c['digits_right'] / c['digits']:.2%}" for c in row.values()]
        lines.append(f"| {spacing}: digits | " + " | ".join(digits) + " |")
    pooled = [table["small gaps"][n] for n in range(2, 7) if n in table["small gaps"]]
    if pooled:  # the bar: numbers of 2-6 digits with small gaps, whole and per digit
        numbers = sum(c["right"] + c["refused"] + c["wrong"] for c in pooled)
        whole = sum(c["right"] for c in pooled) / numbers
        digits = sum(c["digits_right"] for c in pooled) / sum(c["digits"] for c in pooled)
        lines.append(
            f"\nSmall gaps, 2-6 digits pooled ({numbers} numbers): {whole:.1%} right whole, {digits:.2%} of digits."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
