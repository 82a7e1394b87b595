"""The second design's trials for "not a digit": representations trained to keep non-digits apart, judged on the
leave-family-out folds beside today's recipe, with every score at the threshold that keeps 99.9 % of validation
digits.

    python -m training.evaluation.trials --digits data/runs/<run>/digits.pth   # -> models/trials.json (~1 h)
    python -m training.evaluation.trials --report                              # the model card's table from it

A trial reruns stage 2 of each fold (training.evaluation.leave_out.FOLDS: the same groups held out, the same
held-out drawings, the same stage-1 digits) with one change to the recipe:
- *rotation auxiliary*: a self-supervised 4-way rotation loss on the digits (training.auxiliary);
- *ensemble*: stage 2 trained from three training seeds (`Recipe.member`), their probabilities averaged; each of
  the other two seeds alone is a row too, to show how far a seed alone moves the figures.
Each is scored three ways: the 11th output, the energy of the digit logits (Liu et al. 2020: minus their
log-sum-exp) and the top digit's probability (the baseline). Fold models are cached under data/trials/ by stage 1's
run and the change, so a trial that shares members with another (the ensemble's first is today's recipe) trains
them once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from config.paths import DATA_DIR, MODELS_DIR
from inference.labels import CLASSES, NOT_DIGIT
from inference.network import MNISTClassifier, load_checkpoint
from training.evaluation.leave_out import FOLDS, FoldInputs, fold_figures, fold_inputs, pooled, write_block
from training.lifecycle.registry import Run
from training.loop import pick_device
from training.recipe import Recipe
from training.scratch import train_from_scratch

RESULTS = MODELS_DIR / "trials.json"
SCORES = ("11th output", "energy", "confidence only")
MARKERS = ("<!-- trials:start -->", "<!-- trials:end -->")
BATCH = 1_000


@dataclass(frozen=True)
class Trial:
    """One change to stage 2's recipe, and how many differently seeded members are averaged."""

    key: str  # --only's name for it
    name: str
    rotation_weight: float = 0.0
    members: int = 1
    first_member: int = 0  # which training seed the members start from (Recipe.member)

    def member_recipes(self, base: Recipe) -> list[Recipe]:
        numbers = range(self.first_member, self.first_member + self.members)
        return [dataclasses.replace(base, rotation_weight=self.rotation_weight, member=m) for m in numbers]


TRIALS = (
    Trial("recipe", "today's recipe"),
    # The ensemble's other members alone: how far one training seed moves the figures (the noise to beat).
    Trial("seed-2", "today's recipe, training seed 2", first_member=1),
    Trial("seed-3", "today's recipe, training seed 3", first_member=2),
    Trial("rotation", "rotation auxiliary (weight 0.5)", rotation_weight=0.5),
    Trial("ensemble", "ensemble of 3 training seeds", members=3),
)


@torch.inference_mode()
def member_scores(models: list[MNISTClassifier], images: torch.Tensor) -> dict[str, np.ndarray]:
    """Each score (higher: less like a digit) of `images` (N, 1, 28, 28), averaged over the members' probabilities
    (the 11th output, the top digit's probability) or their energies. Also "digit": the argmax of the averaged
    digit probabilities, to tell which held-out digits are read right."""
    not_digit, digit_probs, energy = [], [], []
    for model in models:
        model.eval()
        logits = torch.cat([model(images[s : s + BATCH]).double() for s in range(0, len(images), BATCH)])
        not_digit.append(torch.softmax(logits, dim=1)[:, NOT_DIGIT])
        digit_probs.append(torch.softmax(logits[:, : len(CLASSES)], dim=1))
        energy.append(-torch.logsumexp(logits[:, : len(CLASSES)], dim=1))
    probs = torch.stack(digit_probs).mean(0)
    return {
        "11th output": torch.stack(not_digit).mean(0).numpy(),
        "energy": torch.stack(energy).mean(0).numpy(),
        "confidence only": (1.0 - probs.max(dim=1).values).numpy(),
        "digit": probs.argmax(dim=1).numpy(),
    }


def judge_trial(models: list[MNISTClassifier], fold: tuple[str, ...], inputs: FoldInputs, keep: float) -> dict:
    tables = tuple(member_scores(models, x) for x in (inputs.reference, inputs.negatives, inputs.styled))
    right = tables[2]["digit"] == inputs.labels.numpy()
    scored = tuple({k: v for k, v in table.items() if k in SCORES} for table in tables)
    return fold_figures(fold, inputs, (scored[0], scored[1], scored[2]), right, keep)


def member_path(digits: Path, k: int, recipe: Recipe) -> Path:
    """Where fold `k`'s member trained from `digits` with `recipe`'s change is kept (one file per change; a dry
    run's are scratch files, retrained every time)."""
    change = f"rotation{recipe.rotation_weight:g}-member{recipe.member}.pth"
    if recipe.dry_run:
        return DATA_DIR / "dry-run" / "trials" / f"fold-{k}" / change
    return DATA_DIR / "trials" / digits.parent.name / f"fold-{k}" / change


def fold_member(digits: Path, k: int, fold: tuple[str, ...], recipe: Recipe) -> MNISTClassifier:
    """Stage 2 of fold `k` with `recipe` (untracked; trained once, then read from its cache)."""
    out = member_path(digits, k, recipe)
    if recipe.dry_run or not out.exists():
        fold_recipe = dataclasses.replace(recipe, init_from=digits, leave_out=list(fold), out=out, track=False)
        train_from_scratch(fold_recipe, pick_device(recipe.device), Run(f"trial-{k}", enabled=False))
    return load_checkpoint(out).model


def run_trials(
    digits: Path, recipe: Recipe, trials: tuple[Trial, ...], folds: tuple[tuple[str, ...], ...] = FOLDS
) -> list[dict[str, Any]]:
    """Every trial on every fold: its figures per fold, and how many networks it reads each drawing with."""
    results: list[dict[str, Any]] = [{"trial": t.name, "folds": [], "members": t.members} for t in trials]
    for k, fold in enumerate(folds, start=1):
        print(f"\n== fold {k} of {len(folds)}: leaving out {', '.join(fold)}")
        inputs = fold_inputs(fold, recipe)
        for trial, result in zip(trials, results):
            members = [fold_member(digits, k, fold, r) for r in trial.member_recipes(recipe)]
            result["folds"].append(judge_trial(members, fold, inputs, recipe.keep_digits))
            print(f"  {trial.name}: " + ", ".join(f"{s} {result['folds'][-1][s]['flagged']:.1%}" for s in SCORES))
    return results


def lowest_style(result: dict[str, Any], score: str) -> float:
    """The held-out digit style accepted and read right least often, over the trial's folds."""
    return min(v for fold in result["folds"] for v in fold[score]["styles_accepted_and_right"].values())


def table(summary: dict[str, Any]) -> str:
    """The model card's trials section (markdown), from models/trials.json."""
    lines = [
        f"Generated by `python -m training.evaluation.trials --report` from `models/trials.json` "
        f"({summary['command']}). Held-out non-digits flagged, pooled over the three folds, at the threshold keeping "
        f"{100 * summary['keep']:g} % of validation digits; the fold columns are the 11th output's.",
        "",
        "| trial | "
        + " | ".join(SCORES)
        + " | "
        + " | ".join(f"fold {k}" for k in range(1, len(FOLDS) + 1))
        + " | weakest held-out digit style (11th output) | networks per drawing |",
        "|---|" + "---|" * (len(SCORES) + len(FOLDS) + 2),
    ]
    for result in summary["trials"]:
        pooled_cells = [f"{pooled(result['folds'], s):.1%}" for s in SCORES]
        fold_cells = [f"{fold[SCORES[0]]['flagged']:.1%}" for fold in result["folds"]]
        extra = [f"{lowest_style(result, SCORES[0]):.1%}", str(result["members"])]
        lines.append(f"| {result['trial']} | " + " | ".join(pooled_cells + fold_cells + extra) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=Path, help="stage 1's digits.pth of the run the folds repeat stage 2 of")
    parser.add_argument("--report", action="store_true", help="write the card's table from models/trials.json")
    parser.add_argument("--only", choices=[t.key for t in TRIALS], help="one trial (with --dry-run: tests)")
    parser.add_argument("--dry-run", action="store_true", help="a few batches per fold member (tests)")
    parser.add_argument("--data-dir", default=Recipe().data_dir, help="offline MNIST folder (env MNIST_DIR)")
    args = parser.parse_args(argv)
    if args.report:
        write_block(MARKERS, table(json.loads(RESULTS.read_text())))
        return 0
    if args.digits is None:
        parser.error("--digits (a run's stage-1 digits.pth) or --report")
    picked = TRIALS if args.only is None else tuple(t for t in TRIALS if t.key == args.only)
    recipe = Recipe(data_dir=args.data_dir, dry_run=args.dry_run)
    results = run_trials(args.digits, recipe, picked)
    command = f"python -m training.evaluation.trials --digits {args.digits}"
    summary = {"command": command, "keep": recipe.keep_digits, "trials": results}
    out = RESULTS if not args.dry_run else DATA_DIR / "dry-run" / "trials.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
