"""How sure the model should be before it says "not a digit", and how honest its confidences are.

    python -m training.evaluation.calibration models/model.pth  # the not-a-digit and calibration figures

train.py calls `choose_threshold` after training (on the validation split: validation digits as the canvas draws
them, and validation non-digits from the training families) and stores the threshold in the checkpoint's config;
`report` gives the model card's figures on what choosing never saw: held-out non-digits (other fonts, other
shapes, other scribbles, test digits side by side) and the official test digits, plain and re-drawn on the canvas.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from config.settings import settings
from inference.labels import CLASSES, NOT_DIGIT
from inference.network import DEFAULT_MODEL_PATH, Checkpoint, MNISTClassifier, load_checkpoint
from inference.preprocess import IMAGE_SIZE, preprocess_image
from training.dataset import Split, load_mnist, split_validation
from training.recipe import RECIPE, Recipe
from training.synthetic.drawn import DRAWN_CHECK_SEED, PEN_DIGITS_HELDOUT, canvas_drawing, pen_digits
from training.synthetic.negatives import make_negatives
from training.evaluation.plots import plot_not_digit

ECE_BINS = 15
BATCH = 1_000
HELDOUT_NEGATIVES = 3_000
HELDOUT_SEED = 7_777
PEN_HELDOUT = 1_000  # pen-drawn digits in ways training never saw, for the report


@torch.inference_mode()
def logits_of(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) -> (N, classes) logits in float64, in batches."""
    model.eval()
    return torch.cat([model(images[i : i + BATCH]).double() for i in range(0, len(images), BATCH)])


def fit_temperature(
    digit_logits: torch.Tensor, labels: torch.Tensor, grid: tuple[float, float, int] = RECIPE.temperatures
) -> float:
    """The temperature of the log-spaced `grid` (lowest, highest, how many) whose digit probabilities give `labels`
    the highest likelihood (temperature scaling: it rescales every confidence and changes no answer)."""
    lowest, highest, count = grid
    temperatures = np.exp(np.linspace(np.log(lowest), np.log(highest), count))
    losses = [float(F.cross_entropy(digit_logits / t, labels)) for t in temperatures]
    return float(temperatures[int(np.argmin(losses))])


@torch.inference_mode()
def scores(model: torch.nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 28, 28) inputs -> ((N, 10) digit probabilities, (N,) not-a-digit probabilities), as
    `inference.predict.classify` computes them."""
    model.eval()
    digit_probs, not_digit = [], []
    for start in range(0, len(images), BATCH):
        logits = model(images[start : start + BATCH]).double()
        digit_probs.append(F.softmax(logits[:, : len(CLASSES)], dim=1).numpy())
        if logits.shape[1] > NOT_DIGIT:
            not_digit.append(F.softmax(logits, dim=1)[:, NOT_DIGIT].numpy())
        else:
            not_digit.append(np.zeros(len(logits)))
    return np.concatenate(digit_probs), np.concatenate(not_digit)


def drawn_inputs(images: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """`size` of `images` re-drawn as canvas strokes and read back through the app's preprocessing, with the indices
    picked (the drawn-digit check's recipe: every fifth on a transparent background)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(size, len(images)), replace=False)
    out = np.zeros((len(picks), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for n, i in enumerate(picks):
        drawing = canvas_drawing(images[int(i)].squeeze(0).numpy(), rng, transparent=n % 5 == 0)
        out[n, 0] = preprocess_image(drawing)
    return torch.from_numpy(out), picks


@dataclass
class Choice:
    """The chosen threshold and the trade-off curve it was chosen on (validation), and the fitted temperature."""

    threshold: float
    digits_kept: float
    flagged: float
    curve: list[tuple[float, float, float]]  # (threshold, digits kept, non-digits flagged)
    temperature: float = 1.0


def choose_threshold(digit_scores: np.ndarray, negative_scores: np.ndarray, keep: float) -> Choice:
    """The lowest threshold (most non-digits flagged) that still keeps `keep` of the digits.

    A digit is kept when its not-a-digit score is below the threshold; a non-digit is flagged when its score reaches
    it. Candidates are the observed scores, so the curve is exact on the validation data."""
    candidates = np.unique(np.concatenate([digit_scores, negative_scores, [0.5, 1.0]]))
    candidates = candidates[(candidates > 0.0) & (candidates <= 1.0)]
    kept = np.array([(digit_scores < t).mean() for t in candidates])
    flagged = np.array([(negative_scores >= t).mean() for t in candidates])

    def lowest_keeping(share: float) -> int:
        ok = np.flatnonzero(kept >= share)
        return int(ok[0]) if ok.size else len(candidates) - 1

    best = lowest_keeping(keep)
    # The curve for the plot and the metadata, thinned (every distinct point would be thousands) on a log scale of
    # the digits given up, where the trade-off happens: from 1 in 10,000 to half of them.
    picks = {lowest_keeping(1.0 - rejected) for rejected in np.geomspace(1e-4, 0.5, 80)} | {best}
    curve = [(float(candidates[i]), float(kept[i]), float(flagged[i])) for i in sorted(picks)]
    return Choice(float(candidates[best]), float(kept[best]), float(flagged[best]), curve)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence: the bin-weighted |accuracy - mean confidence| over equal-width bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def validation_inputs(val_digits: Split, seed: int, pen_count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits a threshold must keep: validation digits plain, re-drawn on the canvas and pen-drawn (at most
    `pen_count`, the recipe's `pen_validation`), with labels."""
    drawn, picks = drawn_inputs(val_digits.images, len(val_digits), seed)
    pen, pen_labels = pen_digits(min(pen_count, len(val_digits)), seed)
    images = torch.cat([val_digits.images, drawn, pen])
    return images, torch.cat([val_digits.labels, val_digits.labels[torch.from_numpy(picks)], pen_labels])


def calibrate(model: MNISTClassifier, val_digits: Split, val_negatives: torch.Tensor, recipe: Recipe) -> Choice:
    """Fit the temperature, then choose the not-a-digit threshold by the recipe's policy (`keep_digits`), on
    validation only: digits plain, re-drawn on the canvas and pen-drawn, and non-digits. Both are stored in the model
    (its config travels in the checkpoint)."""
    images, labels = validation_inputs(val_digits, recipe.seed, recipe.pen_validation)
    model.set_calibration(temperature=1.0)
    temperature = fit_temperature(logits_of(model, images)[:, : len(CLASSES)], labels, recipe.temperatures)
    model.set_calibration(temperature=temperature)
    _, digit_scores = scores(model, images)
    _, negative_scores = scores(model, val_negatives)
    choice = choose_threshold(digit_scores, negative_scores, recipe.keep_digits)
    choice.temperature = temperature
    model.set_calibration(reject_threshold=choice.threshold)
    return choice


def report(
    model: torch.nn.Module, test: Any, heldout: torch.Tensor, kinds: list[str], drawn_size: int = 2_000
) -> dict[str, Any]:
    """Figures on data the threshold never saw: held-out non-digits flagged (in all and per family), official test
    digits kept, canvas-drawn test digits accepted and right, and the ECE on the official test."""
    threshold = float(getattr(model, "reject_threshold", 1.0))
    probs, not_digit = scores(model, test.images)
    labels = test.labels.numpy()
    drawn, picks = drawn_inputs(test.images, drawn_size, DRAWN_CHECK_SEED)
    drawn_probs, drawn_not_digit = scores(model, drawn)
    accepted_right = (drawn_not_digit < threshold) & (drawn_probs.argmax(axis=1) == labels[picks])
    _, negative = scores(model, heldout)
    flagged = negative >= threshold
    families = Counter(kinds)
    pen, pen_labels = pen_digits(min(PEN_HELDOUT, drawn_size), HELDOUT_SEED, PEN_DIGITS_HELDOUT)
    pen_probs, pen_not_digit = scores(model, pen)
    pen_right = (pen_not_digit < threshold) & (pen_probs.argmax(axis=1) == pen_labels.numpy())
    return {
        "threshold": threshold,
        "temperature": float(getattr(model, "temperature", 1.0)),
        "heldout_flagged": float(flagged.mean()) if len(flagged) else 0.0,
        "heldout_count": len(flagged),
        "heldout_by_family": {name: float(flagged[[k == name for k in kinds]].mean()) for name in sorted(families)},
        "test_accuracy_digits": float((probs.argmax(axis=1) == labels).mean()),
        "test_digits_kept": float((not_digit < threshold).mean()),
        "drawn_accepted_and_right": float(accepted_right.mean()),
        "drawn_kept": float((drawn_not_digit < threshold).mean()),
        "drawn_count": len(picks),
        "pen_heldout_accepted_and_right": float(pen_right.mean()),
        "pen_heldout_count": len(pen_labels),
        "ece_test": expected_calibration_error(probs, labels),
    }


def print_report(figures: dict[str, Any]) -> None:
    print(
        f"not a digit: threshold {figures['threshold']:.3f}; held-out non-digits flagged "
        f"{figures['heldout_flagged']:.2%} of {figures['heldout_count']}"
    )
    for name, share in figures["heldout_by_family"].items():
        print(f"  {name:<32} {share:.2%}")
    print(
        f"official test: digits kept {figures['test_digits_kept']:.2%}, argmax accuracy "
        f"{figures['test_accuracy_digits']:.2%}, ECE {figures['ece_test']:.3%} (temperature "
        f"{figures['temperature']:.3f}); canvas-drawn test digits: accepted and right "
        f"{figures['drawn_accepted_and_right']:.2%}, kept {figures['drawn_kept']:.2%} ({figures['drawn_count']}); "
        f"pen-drawn digits in held-out ways: accepted and right {figures['pen_heldout_accepted_and_right']:.2%} "
        f"({figures['pen_heldout_count']})"
    )


def confidence_only(model: torch.nn.Module, val_digits: Split, heldout: torch.Tensor, seed: int) -> Choice:
    """The alternative to a "not a digit" class: call an input "not a digit" when the best digit's probability is low,
    at the threshold that keeps the recipe's `keep_digits` of the validation digits (as `calibrate` keeps them), and
    count the held-out non-digits it flags. Scores are 1 - confidence, so the curve reads as `calibrate`'s does."""
    images, _ = validation_inputs(val_digits, seed, RECIPE.pen_validation)
    digit_probs, _ = scores(model, images)
    heldout_probs, _ = scores(model, heldout)
    return choose_threshold(1.0 - digit_probs.max(axis=1), 1.0 - heldout_probs.max(axis=1), RECIPE.keep_digits)


def redraw_tradeoff(checkpoint: Checkpoint, val: Split, seed: int, path: Path) -> None:
    """The trade-off plot of a trained checkpoint, from the validation sets `calibrate` chose its threshold on
    (seeded, so the same drawings; the non-digits as many as `with_negatives` drew for its validation)."""
    model = checkpoint.model
    count = max(int(checkpoint.meta.get("recipe", {}).get("negatives", 0)) // RECIPE.negatives_per_validation, 1)
    val_negatives, _ = make_negatives(count, "train", val.images, seed + 1)
    images, _ = validation_inputs(val, seed, RECIPE.pen_validation)
    _, digit_scores = scores(model, images)
    _, negative_scores = scores(model, val_negatives)
    curve = choose_threshold(digit_scores, negative_scores, RECIPE.keep_digits).curve
    kept = float((digit_scores < model.reject_threshold).mean())
    flagged = float((negative_scores >= model.reject_threshold).mean())
    plot_not_digit(curve, (kept, flagged), path)
    print(f"wrote {path}: at the threshold {model.reject_threshold:.3f}, digits kept {kept:.2%}, flagged {flagged:.2%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Not-a-digit and calibration figures of a checkpoint.")
    parser.add_argument("checkpoint", nargs="?", default=str(DEFAULT_MODEL_PATH), help="model file")
    parser.add_argument("--data-dir", default=settings().mnist_dir, help="offline MNIST folder (env MNIST_DIR)")
    parser.add_argument("--heldout", type=int, default=HELDOUT_NEGATIVES, help="held-out non-digits to draw")
    parser.add_argument(
        "--confidence-only",
        action="store_true",
        help="also: what a threshold on the digit confidence alone would flag (any checkpoint, ten classes too)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the validation split's seed (train.py's --seed)")
    parser.add_argument(
        "--tradeoff",
        type=Path,
        metavar="PNG",
        help="redraw the validation trade-off plot of the checkpoint's own threshold (the seeded sets training used)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model
    full_train, test, _ = load_mnist(args.data_dir)
    heldout, kinds = make_negatives(args.heldout, "heldout", test.images, HELDOUT_SEED)
    print_report(report(model, test, heldout, kinds))
    _, val = split_validation(full_train, RECIPE.validation_size, args.seed)
    if args.tradeoff:
        redraw_tradeoff(checkpoint, val, args.seed, args.tradeoff)
    if args.confidence_only:
        alone = confidence_only(model, val, heldout, args.seed)
        print(
            f"confidence alone: keeping {alone.digits_kept:.2%} of the validation digits needs confidence >= "
            f"{1 - alone.threshold:.4f}, which flags {alone.flagged:.2%} of the held-out non-digits"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
