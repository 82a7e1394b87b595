"""The training data beyond MNIST: drawn non-digits for the "not a digit" class, and digits drawn as the canvas
draws them, mixed into the training split; the validation non-digits the threshold is chosen on.

    python -c "from training.synthetic.mixes import canvas_digits"   # used by training.scratch and training.retrain
"""

from __future__ import annotations

import time

import numpy as np
import torch

from inference.labels import NOT_DIGIT
from inference.preprocess import IMAGE_SIZE, preprocess_image
from training.dataset import Split
from training.synthetic.drawn import canvas_drawing, pen_digits
from training.synthetic.negatives import GROUPS, make_negatives
from training.recipe import Recipe
from training.synthetic.styles import STYLE_GROUPS, style_digits


def canvas_digits(train_split: Split, count: int, seed: int) -> Split:
    """`count` digits as the canvas draws them, through the app's preprocessing: half of them training digits
    re-drawn as solid canvas strokes (drawn.canvas_drawing), half pen-drawn the ways people write them
    (drawn.PEN_DIGITS). Beside the non-digits, which are drawn with the same pen, they keep the model from reading
    "drawn on a canvas" as "not a digit"."""
    rng = np.random.default_rng(seed)
    redrawn = count // 2
    picks = rng.choice(len(train_split), size=redrawn, replace=False)
    images = np.zeros((redrawn, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for n, i in enumerate(picks):
        drawing = canvas_drawing(train_split.images[int(i)].squeeze(0).numpy(), rng, transparent=n % 5 == 0)
        images[n, 0] = preprocess_image(drawing)
    pen, pen_labels = pen_digits(count - redrawn, seed)
    return Split(torch.cat([torch.from_numpy(images), pen]), torch.cat([train_split.labels[picks], pen_labels]))


def with_negatives(train_split: Split, val_split: Split, recipe: Recipe) -> tuple[Split, Split]:
    """The training split plus `recipe.negatives` drawn non-digits labelled NOT_DIGIT, `recipe.canvas_digits` digits
    as the canvas draws them and `recipe.style_digits` in the common styles and typed (all shuffled in by `train`),
    and the validation non-digits for the threshold (one for every `recipe.negatives_per_validation`, another
    seed, digits from the validation split). Groups in `recipe.leave_out` (non-digit families, digit styles) are
    left out of both."""
    count, digits = recipe.negatives_count, recipe.canvas_digits_count
    groups = tuple(g for g in GROUPS if g not in recipe.leave_out)
    styles = tuple(g for g in STYLE_GROUPS if g not in recipe.leave_out)
    t0 = time.perf_counter()
    train_neg, _ = make_negatives(count, "train", train_split.images, recipe.seed, groups)
    val_neg, _ = make_negatives(
        max(count // recipe.negatives_per_validation, 1), "train", val_split.images, recipe.seed + 1, groups
    )
    drawn_digits = canvas_digits(train_split, digits, recipe.seed)
    styled, styled_labels, _ = style_digits(recipe.style_digits_count if styles else 0, recipe.seed, styles)
    print(
        f"drew {count} + {len(val_neg)} non-digits for the '{NOT_DIGIT}' class, {digits} canvas-drawn digits and "
        f"{len(styled)} in common styles in {time.perf_counter() - t0:.0f}s"
        + (f"; left out: {', '.join(recipe.leave_out)}" if recipe.leave_out else "")
    )
    labels = torch.full((count,), NOT_DIGIT, dtype=torch.long)
    merged = Split(
        torch.cat([train_split.images, drawn_digits.images, styled, train_neg]),
        torch.cat([train_split.labels, drawn_digits.labels, styled_labels, labels]),
    )
    return merged, Split(val_neg, torch.full((len(val_neg),), NOT_DIGIT, dtype=torch.long))


def with_others(digits: Split, others: Split | None) -> Split:
    """Validation digits and drawn non-digits in one split (what `fit` ranks epochs on)."""
    if others is None:
        return digits
    return Split(torch.cat([digits.images, others.images]), torch.cat([digits.labels, others.labels]))
