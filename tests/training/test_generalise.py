"""Honest on what people draw: the leave-family-out machinery, the doodles and writing styles training draws, and
the shipped model on everyday doodles and digit styles drawn in strokes of this file's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training.evaluation import distance, leave_out
from training.synthetic import doodles, drawn, negatives, styles
from training.recipe import RECIPE, Recipe
import utils


def test_every_family_is_in_a_group_and_every_group_in_exactly_one_fold(mnist_test_split: Any) -> None:
    groups = {family.group for family in negatives.families("train", mnist_test_split.images).values()}
    assert groups == set(negatives.GROUPS)
    held = [g for fold in leave_out.FOLDS for g in fold]
    assert sorted(held) == sorted([*negatives.GROUPS, *styles.STYLE_GROUPS]), "each group held out once"


def test_a_left_out_group_is_never_drawn(mnist_test_split: Any) -> None:
    kept = tuple(g for g in negatives.GROUPS if g not in ("pictures", "letters"))
    _, kinds = negatives.make_negatives(120, "train", mnist_test_split.images, seed=3, groups=kept)
    assert set(negatives.group_of(kinds)) <= set(kept) and len(set(kinds)) >= 4
    _, labels, kinds = styles.style_digits(60, seed=3, groups=("round and slashed zeros",))
    assert set(labels.tolist()) == {0} and set(kinds) == {"round and slashed zeros"}


def test_pictures_are_new_each_time_and_stay_near_their_box() -> None:
    rng = np.random.default_rng(0)
    for name, make in doodles.PICTURES.items():
        first = make(rng)
        points = np.array([p for stroke in first[0] for p in stroke])
        assert points.min() >= -0.3 and points.max() <= 1.3, name
        assert first[1][0] <= first[1][1], name
        assert len(first[0]) >= 2 or len(first[0][0]) > 4, f"{name}: more than one line"
    for name in ("face", "tree", "sun", "cloud", "flower"):  # parts vary, not only pen and place
        shapes = {len(doodles.PICTURES[name](rng)[0]) for _ in range(12)}
        assert len(shapes) > 1 or name == "cloud", name
    assert doodles.cloud(np.random.default_rng(1)) != doodles.cloud(np.random.default_rng(2))


def test_typed_digits_cover_all_ten_and_handwritten_styles_their_own() -> None:
    _, labels, kinds = styles.style_digits(40, seed=1, groups=("typed (DejaVu)",))
    assert set(labels.tolist()) == set(range(10))
    images, labels, _ = styles.style_digits(30, seed=1, groups=("crossed sevens and open fours",))
    assert set(labels.tolist()) == {4, 7} and images.shape == (30, 1, 28, 28)


def test_keeping_threshold_keeps_what_it_promises() -> None:
    reference = np.random.default_rng(0).exponential(size=10_000)
    for keep in (0.99, 0.999, 0.9995):
        assert (reference < leave_out.keeping(reference, keep)).mean() >= keep
    assert (reference < leave_out.keeping(reference, 1.0)).all()


def test_distance_is_small_at_a_class_and_large_far_from_all() -> None:
    rng = np.random.default_rng(0)
    means = rng.normal(0, 5, (10, 8))
    fitted = distance.Distance(means, np.eye(8))
    near = means + rng.normal(0, 0.1, means.shape)
    far = rng.normal(0, 5, (10, 8)) + 40
    assert fitted.score(near).max() < 1.0 < 100.0 < fitted.score(far).min()
    assert list(distance.rank_against(np.arange(10.0), np.array([-1.0, 4.5, 99.0]))) == [0.0, 0.5, 1.0]


def test_a_dry_run_fold_measures_every_method(tmp_path: Path, mnist_test_split: Any) -> None:
    """One fold end to end on a few batches: stage 2 without its groups, then the figures of every method."""
    recipe = Recipe(dry_run=True, out=tmp_path / "digits.pth", track=False)
    from training.scratch import train_from_scratch
    from training.lifecycle.registry import Run

    train_from_scratch(recipe, torch.device("cpu"), Run("dry", enabled=False))
    results = leave_out.run_folds(tmp_path / "digits.pth", Recipe(dry_run=True), leave_out.FOLDS[:1])
    (fold,) = results
    assert fold["groups"] == list(leave_out.FOLDS[0])
    for method in leave_out.METHODS:
        assert 0.0 <= fold[method]["flagged"] <= 1.0
        assert set(fold[method]["flagged_by_family"]) <= {"letter (strokes)", "letter (DejaVu)", "picture"}
        assert fold[method]["validation_digits_kept"] >= RECIPE.keep_digits
    assert "| **all held-out non-digits** |" in leave_out.table(
        {"command": "x", "keep": RECIPE.keep_digits, "folds": results}
    )


# ---------------------------------------------------------------------------------------------------------------
# The shipped model


def test_the_shipped_model_is_what_make_train_makes(checkpoint: utils.Checkpoint) -> None:
    assert checkpoint.meta["command"] == "python train.py", "the production recipe is train.py's defaults"
    assert checkpoint.meta["recipe"]["init_from"] is None, "from scratch: any warm start is a stage inside"
    assert checkpoint.meta["recipe"]["leave_out"] == []


def test_the_card_states_the_leave_family_out_figures_it_was_generated_from() -> None:
    summary = json.loads(leave_out.RESULTS.read_text())
    card = leave_out.CARD.read_text()
    assert leave_out.table(summary) in card, "run python -m training.evaluation.leave_out --report"
    assert len(summary["folds"]) == len(leave_out.FOLDS)


# Everyday doodles, symbols and lowercase letters in strokes of this file's own (training draws its own, different
# ones): what a new user tries first.
UNSEEN_DOODLES: dict[str, list[drawn.Stroke]] = {
    "smiley": [drawn.arc(0.5, 0.5, 0.5, 0.5, 0, 360, 24), [(0.33, 0.38)], [(0.67, 0.38)],
               drawn.arc(0.5, 0.58, 0.3, 0.2, 15, 165, 10)],
    "sad face": [drawn.arc(0.5, 0.5, 0.5, 0.5, 0, 360, 24), [(0.35, 0.35)], [(0.65, 0.35)],
                 drawn.arc(0.5, 0.85, 0.25, 0.15, 200, 340, 10)],
    "pine tree": [[(0.5, 0.0), (0.8, 0.4), (0.2, 0.4), (0.5, 0.0)], [(0.5, 0.3), (0.9, 0.75), (0.1, 0.75), (0.5, 0.3)],
                  [(0.45, 0.75), (0.45, 1.0), (0.55, 1.0), (0.55, 0.75)]],
    "round tree": [[*drawn.arc(0.5, 0.35, 0.45, 0.35, 100, 440, 20)], [(0.45, 0.7), (0.45, 1.0)],
                   [(0.55, 0.7), (0.55, 1.0)]],
    "cloud": [[(0.1, 0.8), *drawn.arc(0.2, 0.6, 0.15, 0.2, 90, 270, 6), *drawn.arc(0.45, 0.4, 0.22, 0.3, 180, 360, 8),
               *drawn.arc(0.75, 0.55, 0.2, 0.25, 240, 450, 8), (0.1, 0.8)]],
    "note": [drawn.arc(0.3, 0.85, 0.2, 0.13, 0, 360, 10), [(0.3, 0.85), (0.2, 0.85)],
             [(0.5, 0.85), (0.5, 0.0), (0.85, 0.3)]],
    "question mark": [[*drawn.arc(0.5, 0.25, 0.4, 0.25, 190, 440, 12), (0.5, 0.65)], [(0.5, 0.95)]],
    "exclamation": [[(0.5, 0.0), (0.5, 0.7)], [(0.5, 0.95)]],
    "dollar": [[*drawn.arc(0.5, 0.3, 0.4, 0.2, 320, 90, 10), *drawn.arc(0.5, 0.7, 0.4, 0.2, 270, 490, 10)],
               [(0.5, 0.0), (0.5, 1.0)]],
    "umbrella": [[*drawn.arc(0.5, 0.5, 0.5, 0.45, 180, 360, 14), (0.0, 0.5)], [(0.5, 0.5), (0.5, 0.9),
                 *drawn.arc(0.4, 0.9, 0.1, 0.1, 0, 180, 6)]],
    "fish": [drawn.arc(0.4, 0.5, 0.38, 0.25, 0, 360, 18), [(0.78, 0.5), (1.0, 0.25), (1.0, 0.75), (0.78, 0.5)]],
    "sun": [drawn.arc(0.5, 0.5, 0.22, 0.22, 0, 360, 14)] + [
        [(0.5 + 0.3 * np.cos(a), 0.5 + 0.3 * np.sin(a)), (0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a))]
        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)
    ],
    "a": [drawn.arc(0.45, 0.55, 0.4, 0.42, -20, -380, 18), [(0.85, 0.2), (0.85, 1.0)]],
    "c": [drawn.arc(0.55, 0.5, 0.45, 0.5, -40, -320, 14)],
}  # fmt: skip


def test_everyday_doodles_in_strokes_training_never_saw_are_flagged(flagged_of: Any) -> None:
    flagged = flagged_of(UNSEEN_DOODLES, seed=2026, aspect=(0.8, 1.3), height=(90, 240))
    assert sum(flagged.values()) >= 0.92 * 10 * len(flagged), flagged


@pytest.mark.parametrize("group", styles.STYLE_GROUPS)
def test_every_common_way_of_writing_a_digit_stays_that_digit(checkpoint: utils.Checkpoint, group: str) -> None:
    rng = np.random.default_rng(99)
    digits = range(10) if group in styles.TYPED else sorted(styles.COMMON_STYLES[group])
    wrong: list[tuple[int, int]] = []
    total = 0
    for digit in [d for d in digits for _ in range(200 // len(digits))]:
        drawing = None
        while drawing is None:
            drawing = styles.style_digit(group, digit, rng)
        read = utils.classify(checkpoint.model, drawing)
        total += 1
        if not (read.is_digit and read.digit == digit):
            wrong.append((digit, read.digit if read.is_digit else -1))
    assert len(wrong) <= (0.01 if group in styles.TYPED else 0.05) * total, f"{group}: {wrong}"
