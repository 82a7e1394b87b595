"""Leave-family-out: how well "not a digit" works on kinds of drawing the model was never trained on, and whether
digits written in a style it never saw stay digits.

    python -m training.evaluation.leave_out --digits data/runs/<run>/digits.pth  # -> models/leave_out.json (~25 min)
    python -m training.evaluation.leave_out --report                             # the model card's table from that file

The non-digit families (training.synthetic.negatives.GROUPS) and the digit styles
(training.synthetic.styles.STYLE_GROUPS) are split
into folds. Each fold reruns stage 2 of the recipe (train.py --init-from the run's stage-1 `digits.pth`, which saw
MNIST only) with its groups left out of training and out of the validation set its thresholds are chosen on, then
measures those groups. Every method is judged on the same fold models at a threshold that keeps 99.9 % of the
validation digits: the 11th output alone, the confidence alone (the baseline), the feature distance alone
(training.evaluation.distance) and the 11th output and the distance combined.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from config.paths import DATA_DIR, MODELS_DIR
from inference.network import MNISTClassifier, load_checkpoint
from training.evaluation import distance
from training.evaluation.calibration import scores, validation_inputs
from training.dataset import Split, load_mnist, split_validation
from training.loop import pick_device
from training.synthetic.negatives import GROUPS, make_negatives
from training.recipe import Recipe
from training.lifecycle.registry import Run
from training.scratch import train_from_scratch
from training.synthetic.styles import STYLE_GROUPS, style_digits

FOLDS: tuple[tuple[str, ...], ...] = (
    ("letters", "pictures", "round and slashed zeros", "typed (STIX, Computer Modern)"),
    ("symbols", "scribbles", "ones with a flag, a serif or a foot", "typed (DejaVu)"),
    ("shapes", "several digits", "crossed sevens and open fours", "flat-topped threes and two-stroke fives"),
)
FOLD_NEGATIVES = 3_000
FOLD_STYLE_DIGITS = 1_200
FOLD_SEED = 4_242
DISTANCE_FIT = 10_000  # MNIST training digits the class means and covariance come from
RESULTS = MODELS_DIR / "leave_out.json"
METHODS = ("11th output", "confidence only", "feature distance", "11th output + distance")
CARD = MODELS_DIR / "README.md"
MARKERS = ("<!-- leave-out:start -->", "<!-- leave-out:end -->")


def method_scores(model: MNISTClassifier, images: torch.Tensor, fitted: distance.Distance) -> dict[str, np.ndarray]:
    """Each method's not-a-digit score (higher: less like a digit); the combined one is filled in by `judge`."""
    digit_probs, not_digit = scores(model, images)
    far = fitted.score(distance.features(model, images))
    return {"11th output": not_digit, "confidence only": 1.0 - digit_probs.max(axis=1), "feature distance": far}


def keeping(reference: np.ndarray, keep: float) -> float:
    """The lowest threshold at which `keep` of the `reference` (validation digits') scores stay below it."""
    ordered = np.sort(reference)
    needed = min(len(ordered), int(np.ceil(keep * len(ordered))))
    return float(np.nextafter(ordered[needed - 1], np.inf))


@dataclass
class FoldInputs:
    """What a fold is judged on: the validation digits a threshold must keep, the held-out non-digits (with each
    one's family) and the held-out digit styles (with labels and each one's style)."""

    reference: torch.Tensor
    negatives: torch.Tensor
    kinds: list[str]
    styled: torch.Tensor
    labels: torch.Tensor
    style_kinds: list[str]


def fold_inputs(fold: tuple[str, ...], recipe: Recipe) -> FoldInputs:
    """The fold's inputs, drawn from the fold's seed: the same for every method and every trial."""
    seed, size = recipe.seed, recipe.check_size
    full_train, test, _ = load_mnist(recipe.data_dir)
    _, val = split_validation(full_train, recipe.validation_size, seed)
    val_digits = Split(val.images[: size(len(val))], val.labels[: size(len(val))])
    reference, _ = validation_inputs(val_digits, seed, recipe.pen_validation)
    negative_groups = tuple(g for g in GROUPS if g in fold)
    style_groups = tuple(g for g in STYLE_GROUPS if g in fold)
    negatives, kinds = make_negatives(size(FOLD_NEGATIVES), "train", test.images, FOLD_SEED, negative_groups)
    styled, labels, style_kinds = style_digits(size(FOLD_STYLE_DIGITS), FOLD_SEED, style_groups)
    return FoldInputs(reference, negatives, kinds, styled, labels, style_kinds)


def judge(model: MNISTClassifier, fold: tuple[str, ...], recipe: Recipe) -> dict[str, Any]:
    """The fold's figures for every method of METHODS (`fold_figures`)."""
    inputs = fold_inputs(fold, recipe)
    full_train, _, _ = load_mnist(recipe.data_dir)
    train_split, _ = split_validation(full_train, recipe.validation_size, recipe.seed)
    fitted = distance.fit_distance(model, train_split.images[:DISTANCE_FIT], train_split.labels[:DISTANCE_FIT])
    reference = method_scores(model, inputs.reference, fitted)
    held = method_scores(model, inputs.negatives, fitted)
    digits = method_scores(model, inputs.styled, fitted)
    pair = (reference["11th output"], reference["feature distance"])
    for table in (reference, held, digits):
        table["11th output + distance"] = distance.combined(pair, (table["11th output"], table["feature distance"]))
    right = scores(model, inputs.styled)[0].argmax(axis=1) == inputs.labels.numpy()
    return fold_figures(fold, inputs, (reference, held, digits), right, recipe.keep_digits)


def fold_figures(
    fold: tuple[str, ...],
    inputs: FoldInputs,
    tables: tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]],
    right: np.ndarray,
    keep: float,
) -> dict[str, Any]:
    """Per method of `tables` (its scores on the reference digits, the held-out non-digits and the held-out
    styles): the held-out non-digits flagged (in all, per family) and the held-out digit styles accepted and read
    right (per style), at the threshold keeping `keep` of the reference digits."""
    reference, held, digits = tables
    figures: dict[str, Any] = {"groups": list(fold), "negatives": len(inputs.kinds)}
    figures["style_digits"] = len(inputs.style_kinds)
    for method in reference:
        threshold = keeping(reference[method], keep)
        flagged = held[method] >= threshold
        accepted = (digits[method] < threshold) & right
        figures[method] = {
            "validation_digits_kept": float((reference[method] < threshold).mean()),
            "flagged": float(flagged.mean()),
            "flagged_by_family": share_by(flagged, inputs.kinds),
            "styles_accepted_and_right": share_by(accepted, inputs.style_kinds),
        }
    return figures


def share_by(hits: np.ndarray, kinds: list[str]) -> dict[str, float]:
    return {name: float(hits[[k == name for k in kinds]].mean()) for name in sorted(set(kinds))}


def run_folds(digits: Path, recipe: Recipe, folds: tuple[tuple[str, ...], ...] = FOLDS) -> list[dict[str, Any]]:
    """Stage 2 once per fold (untracked: a fold model is evidence, not a candidate), then `judge`."""
    device = pick_device(recipe.device)
    results = []
    for k, fold in enumerate(folds, start=1):
        out = (DATA_DIR / "dry-run" if recipe.dry_run else DATA_DIR / "leave-out") / f"fold-{k}" / "model.pth"
        fold_recipe = dataclasses.replace(recipe, init_from=digits, leave_out=list(fold), out=out, track=False)
        print(f"\n== fold {k} of {len(folds)}: leaving out {', '.join(fold)}")
        train_from_scratch(fold_recipe, device, Run(f"leave-out-{k}", enabled=False))
        results.append(judge(load_checkpoint(out).model, fold, recipe))
        print_fold(results[-1])
    return results


def print_fold(figures: dict[str, Any]) -> None:
    for method in METHODS:
        row = figures[method]
        families = ", ".join(f"{k} {v:.1%}" for k, v in row["flagged_by_family"].items())
        styles = ", ".join(f"{k} {v:.1%}" for k, v in row["styles_accepted_and_right"].items())
        print(f"  {method:<24} flagged {row['flagged']:.2%} ({families}); styles: {styles}")


def pooled(results: list[dict[str, Any]], method: str) -> float:
    """The share flagged over every fold's held-out non-digits together."""
    total = sum(r["negatives"] for r in results)
    return sum(r[method]["flagged"] * r["negatives"] for r in results) / total


def table(summary: dict[str, Any]) -> str:
    """The model card's leave-family-out section (markdown), generated from models/leave_out.json."""
    results = summary["folds"]
    keep = f"{100 * summary['keep']:g} %"
    lines = [
        f"Generated by `python -m training.evaluation.leave_out --report` from `models/leave_out.json` "
        f"({summary['command']}). "
        f"Each fold trained stage 2 without its groups; every threshold keeps {keep} of the validation digits.",
        "",
        "| held out (never trained on) | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for figures in results:
        families = figures[METHODS[0]]["flagged_by_family"]
        for family in families:
            cells = [f"{figures[m]['flagged_by_family'][family]:.1%}" for m in METHODS]
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines.append(
        "| **all held-out non-digits** | " + " | ".join(f"**{pooled(results, m):.1%}**" for m in METHODS) + " |"
    )
    for figures in results:
        for style, share in figures[METHODS[0]]["styles_accepted_and_right"].items():
            cells = [f"{figures[m]['styles_accepted_and_right'][style]:.1%}" for m in METHODS]
            lines.append(f"| digits: {style} (accepted and right) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_card(summary: dict[str, Any], card: Path = CARD) -> None:
    write_block(MARKERS, table(summary), card)
    print(f"wrote the leave-family-out table into {card}")


def write_block(markers: tuple[str, str], body: str, card: Path = CARD) -> None:
    """`body` between the card's two markers (replacing what was there), or appended with them."""
    text = card.read_text()
    start, end = markers
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n{block}\n"
    card.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=Path, help="stage 1's digits.pth of the run the folds repeat stage 2 of")
    parser.add_argument("--report", action="store_true", help="write the table from models/leave_out.json")
    parser.add_argument("--dry-run", action="store_true", help="a few batches per fold (tests)")
    parser.add_argument("--data-dir", default=Recipe().data_dir, help="offline MNIST folder (env MNIST_DIR)")
    args = parser.parse_args(argv)
    if args.report:
        write_card(json.loads(RESULTS.read_text()))
        return 0
    if args.digits is None:
        parser.error("--digits (a run's stage-1 digits.pth) or --report")
    recipe = Recipe(data_dir=args.data_dir, dry_run=args.dry_run)
    results = run_folds(args.digits, recipe)
    command = f"python -m training.evaluation.leave_out --digits {args.digits}"
    summary = {"command": command, "recipe": recipe.portable(), "keep": recipe.keep_digits, "folds": results}
    for method in METHODS:
        print(f"{method:<24} all held-out non-digits flagged: {pooled(results, method):.2%}")
    out = RESULTS if not args.dry_run else DATA_DIR / "dry-run" / "leave_out.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
