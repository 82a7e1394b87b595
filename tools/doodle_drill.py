"""The product learning the non-digits its users label: a drill in a throwaway database.

    make doodle-drill                               # 40 labels each of three families read as digits today
    python -m tools.doodle_drill --examples 40 --digits 200 [--dry-run]

1. Draws `--examples` drawings of each of three doodle families the shipped model reads as digits (a kite, a key, a
   pear: tools/unseen_doodles.py, drawn differently from anything training generates), and `--digits` pen-drawn
   digits, classifies each with production as the app does and logs it with the user's answer ("Not a digit", or the
   digit) through the real db.py, from twenty visitors.
2. Runs `python train.py --retrain` against that database (a subprocess, configured like the app).
3. Judges production and the candidate on FRESH drawings: the three families, the other unseen families and the
   everyday doodles (flagged), beside the drawn-digit check, the held-out non-digits and the official test; then
   as the gate would (`make promote`'s figures, with the labelled families' held-out drawings), promoting nothing.

The database is made on `TEST_DATABASE_URL`'s server (or an embedded one) and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

import db
import utils
from config.settings import settings
from tools import pg, unseen_doodles
from tools.feedback_drill import log_labelled, retrain, summary_line
from training.lifecycle import promotion
from training.synthetic import doodles, drawn

FEED_SEED, NEW_SEED = 11, 97  # the drawings fed back, and the fresh ones the result is judged on
VISITORS = 20  # who label them: enough that a correction of a confident answer is corroborated, not held


def feed(database: db.Database, production: utils.Checkpoint, examples: int, digits: int) -> dict[str, int]:
    """Log the labelled drawings; returns, per family, how many production already called "not a digit"."""
    rng = np.random.default_rng(FEED_SEED)
    flagged = {}
    for family in unseen_doodles.LABELLED:
        right = 0
        for n in range(examples):
            drawing = unseen_doodles.draw(family, rng)
            right += log_labelled(database, production, drawing, db.NOT_A_DIGIT, f"visitor-{n % VISITORS}")
        flagged[family] = right
    for n in range(digits):
        digit = n % 10
        log_labelled(database, production, drawn.pen_digit(digit, rng), digit, f"visitor-{n % VISITORS}")
    return flagged


def everyday_flagged(model: Any, per_family: int, seed: int = NEW_SEED) -> float:
    """Fresh everyday doodles (every training family, new parts every time) called "not a digit"."""
    rng = np.random.default_rng(seed)
    flagged = total = 0
    for family in doodles.PICTURES.values():
        for _ in range(per_family):
            strokes, aspect = family(rng)
            flagged += not utils.classify(model, drawn.pen_drawing(strokes, rng, aspect=aspect)).is_digit
            total += 1
    return flagged / total


def judge(production: utils.Checkpoint, candidate: utils.Checkpoint, summary: dict[str, Any], fresh: int) -> None:
    """The before/after table, on drawings neither model saw."""
    rows = []
    for name, checkpoint in (("production", production), ("candidate", candidate)):
        shares = unseen_doodles.measure(checkpoint.model, fresh, NEW_SEED)
        labelled = float(np.mean([shares[f] for f in unseen_doodles.LABELLED]))
        others = float(np.mean([v for f, v in shares.items() if f not in unseen_doodles.LABELLED]))
        figures = checkpoint.meta.get("not_digit") or {}
        rows.append((name, labelled, others, everyday_flagged(checkpoint.model, max(1, fresh // 10)), figures))
    print(f"\n{'':12}{'labelled families':>18}{'other unseen':>14}{'everyday':>10}{'held-out':>10}{'drawn digits':>14}")
    for name, labelled, others, everyday, figures in rows:
        print(
            f"{name:12}{labelled:>18.1%}{others:>14.1%}{everyday:>10.1%}{figures.get('heldout_flagged', 0):>10.1%}"
            f"{figures.get('drawn_accepted_and_right', 0):>14.2%}"
        )
    print(summary_line(summary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=40, help="labelled drawings fed back per family")
    parser.add_argument("--digits", type=int, default=200, help="labelled digits fed back beside them")
    parser.add_argument("--fresh", type=int, default=200, help="fresh drawings per family to judge on")
    parser.add_argument("--dry-run", action="store_true", help="retrain with --dry-run (a few batches)")
    args, retrain_flags = parser.parse_known_args(argv)
    production = utils.load_checkpoint(os.environ.get("MODEL_PATH") or utils.DEFAULT_MODEL_PATH)
    with pg.throwaway_database("mnist_doodle_drill") as (dsn, tmp):
        database = db.Database(dsn, spool_path=tmp / "spool.jsonl")
        for family, flagged in feed(database, production, args.examples, args.digits).items():
            print(f"fed {args.examples} {family} drawings labelled not a digit (production flagged {flagged})")
        database.close()
        candidate = retrain(dsn, tmp, retrain_flags, args.dry_run)
        if candidate is None:
            return 1
        summary = json.loads(candidate.with_suffix(".json").read_text())
        tuned = utils.load_checkpoint(candidate)
        judge(production, tuned, summary, args.fresh)
        print("\nthe gate, as make promote would judge it (nothing is promoted):")
        mnist_dir = settings().mnist_dir
        reasons = promotion.judge(tuned, production, str(mnist_dir) if mnist_dir else None)[1]
        print("refused: " + "; ".join(reasons) if reasons else "it would pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
