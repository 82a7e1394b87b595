"""The feedback loop end to end, on a handwriting style the shipped model misreads.

    make retrain-drill                                  # crossed twos and flagged ones, 160 examples each
    python -m tools.feedback_drill --styles flag-one --examples 150 [--dry-run]

1. Draws `--examples` canvas drawings of each style (drawn.draw_style), classifies them with the production model
   as the app does, and logs each prediction and its true label through the real db.py into a fresh database.
2. Runs `python train.py --retrain` against that database (a subprocess, configured like the app: DATABASE_URL).
3. Reads NEW drawings of the same styles (another seed) with production and with the candidate, and prints both
   accuracies beside the candidate's official test accuracy from models/candidate.json.

The database is made on `TEST_DATABASE_URL`'s server (or an embedded one) and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


import db
from training.synthetic import drawn
from tools import pg
import utils

ROOT = Path(__file__).resolve().parent.parent
FEED_SEED, NEW_SEED = 11, 97  # the examples fed back, and the new ones the result is judged on


def log_labelled(
    database: db.Database, checkpoint: utils.Checkpoint, drawing: np.ndarray, label: int | str, by: str | None = None
) -> bool:
    """Classify `drawing` as the app does, log the prediction and its true `label` (a digit, or db.NOT_A_DIGIT; given
    by `by`) through the real db.py, as a user giving feedback would; True when the model read it right."""
    prediction = utils.classify(checkpoint.model, drawing)
    knows = utils.knows_not_digit(checkpoint.model)
    row = database.log_prediction(
        prediction.digit, prediction.confidence, prediction.probabilities, prediction.png, checkpoint.version,
        None, prediction.is_digit if knows else None, prediction.not_digit_score if knows else None,
    )  # fmt: skip
    database.set_true_label(row, label, by)
    if label == db.NOT_A_DIGIT:
        return not prediction.is_digit
    return bool(prediction.is_digit and prediction.digit == label)


def feed(database: db.Database, checkpoint: utils.Checkpoint, style: str, count: int, seed: int) -> int:
    """Log `count` drawings of `style` with their true label; returns how many the production model got right."""
    rng = np.random.default_rng(seed)
    digit = drawn.STYLES[style][0]
    return sum(log_labelled(database, checkpoint, drawn.draw_style(style, rng), digit) for _ in range(count))


def summary_line(summary: dict[str, Any]) -> str:
    """The candidate's official test and feedback hold-out, from the candidate.json its retrain wrote."""
    return (
        f"official test: candidate {summary['official_test_accuracy']:.2%}; feedback hold-out "
        f"{summary['feedback_holdout_before']:.1%} -> {summary['feedback_holdout_after']:.1%} "
        f"({summary['holdout_rows']} rows); registered version {summary['version']}"
    )


def retrain(dsn: str, folder: Path, flags: list[str], dry_run: bool) -> Path | None:
    """`python train.py --retrain` against the database `dsn` (a subprocess, configured like the app), its candidate
    written to `folder`; None (said) when it exits non-zero."""
    candidate = folder / "candidate.pth"
    command = [sys.executable, "train.py", "--retrain", "--out", str(candidate), *flags, *(["--dry-run"] * dry_run)]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "DATABASE_URL": dsn})
    if result.returncode != 0:
        print(f"retrain exited {result.returncode}")
        return None
    return candidate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--styles", nargs="+", default=["crossed-two", "flag-one"], choices=list(drawn.STYLES))
    parser.add_argument("--examples", type=int, default=160, help="labelled examples fed back per style")
    parser.add_argument("--new", type=int, default=300, help="new examples per style to judge the result on")
    parser.add_argument("--dry-run", action="store_true", help="retrain with --dry-run (a few batches)")
    args, retrain_flags = parser.parse_known_args(argv)

    production = utils.load_checkpoint(os.environ.get("MODEL_PATH") or utils.DEFAULT_MODEL_PATH)
    with pg.throwaway_database("mnist_drill") as (dsn, tmp):
        database = db.Database(dsn, spool_path=tmp / "spool.jsonl")
        for style in args.styles:
            right = feed(database, production, style, args.examples, FEED_SEED)
            print(f"fed {args.examples} labelled {style} drawings (production read {right} of them right)")
        database.close()
        candidate = retrain(dsn, tmp, retrain_flags, args.dry_run)
        if candidate is None:
            return 1
        summary = json.loads(candidate.with_suffix(".json").read_text())
        tuned = utils.load_checkpoint(candidate)
        print(f"\n{'style':16}{'production':>12}{'candidate':>12}   (on {args.new} NEW drawings each)")
        for style in args.styles:
            before = drawn.style_accuracy(production.model, style, args.new, NEW_SEED)
            after = drawn.style_accuracy(tuned.model, style, args.new, NEW_SEED)
            print(f"{style:16}{before:>12.1%}{after:>12.1%}   {100 * (after - before):+.1f} points")
        print(summary_line(summary))
        for name, model in (("production", production), ("candidate", tuned)):
            figures = model.meta.get("not_digit") or {}
            if figures:
                print(
                    f"{name}: held-out non-digits flagged {figures['heldout_flagged']:.1%}, canvas-drawn digits "
                    f"accepted and right {figures['drawn_accepted_and_right']:.2%}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
