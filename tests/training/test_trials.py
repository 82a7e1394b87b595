"""The second design's trials: the rotation task trains beside the classifier and leaves the saved model as it was,
an ensemble's scores are its members' averaged, and a dry-run trial is judged on a leave-family-out fold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from inference.network import MNISTClassifier, load_checkpoint
from training import auxiliary
from training.evaluation import leave_out, trials
from training.lifecycle.registry import Run
from training.recipe import RECIPE, Recipe
from training.scratch import train_from_scratch


def test_each_image_is_turned_by_the_quarter_turns_it_is_labelled_with() -> None:
    images = torch.rand(64, 1, 28, 28)
    turned, turns = auxiliary.rotated(images, torch.Generator().manual_seed(0))
    assert set(turns.tolist()) == {0, 1, 2, 3}
    for image, out, k in zip(images, turned, turns.tolist()):
        assert torch.equal(torch.rot90(out, -k, dims=(1, 2)), image)


def test_the_rotation_loss_trains_its_head_and_only_digits_are_turned() -> None:
    model, head = MNISTClassifier(num_classes=11), auxiliary.RotationHead(128)
    x = torch.rand(8, 1, 28, 28)
    labels = torch.tensor([0, 1, 10, 10, 2, 10, 3, 4])
    logits, loss = auxiliary.logits_and_rotation_loss(model, head, x, labels, torch.Generator().manual_seed(0))
    assert logits.shape == (8, 11) and loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert head.linear.weight.grad is not None and head.linear.weight.grad.abs().sum() > 0
    model.eval()
    torch.testing.assert_close(
        model.classifier[-1](model.classifier[:-1](model.features((x - 0.1307) / 0.3081))), model(x)
    )


def test_an_ensemble_of_one_model_twice_scores_as_the_model(checkpoint: object) -> None:
    model = load_checkpoint().model
    images = torch.rand(20, 1, 28, 28)
    one, twice = trials.member_scores([model], images), trials.member_scores([model, model], images)
    for score in (*trials.SCORES, "digit"):
        np.testing.assert_allclose(one[score], twice[score], rtol=1e-9, atol=1e-12)
    assert (one["11th output"] >= 0).all() and (one["11th output"] <= 1).all()


def test_a_rotation_trial_runs_on_a_fold_and_saves_a_model_of_the_shipped_shape(tmp_path: Path) -> None:
    train_from_scratch(
        Recipe(dry_run=True, out=tmp_path / "digits.pth", track=False), torch.device("cpu"), Run("dry", enabled=False)
    )
    rotation = next(t for t in trials.TRIALS if t.rotation_weight > 0)
    (result,) = trials.run_trials(tmp_path / "digits.pth", Recipe(dry_run=True), (rotation,), leave_out.FOLDS[:1])
    (fold,) = result["folds"]
    for score in trials.SCORES:
        assert 0.0 <= fold[score]["flagged"] <= 1.0
        assert fold[score]["validation_digits_kept"] >= RECIPE.keep_digits
    recipe = Recipe(dry_run=True, rotation_weight=rotation.rotation_weight)
    member = load_checkpoint(trials.member_path(tmp_path / "digits.pth", 1, recipe))
    assert member.meta["recipe"]["rotation_weight"] == 0.5
    assert set(member.model.state_dict()) == set(MNISTClassifier(num_classes=11).state_dict())
    assert "| rotation auxiliary" in trials.table({"command": "x", "keep": RECIPE.keep_digits, "trials": [result]})


def test_the_card_states_the_trials_it_was_generated_from() -> None:
    summary = json.loads(trials.RESULTS.read_text())
    assert trials.table(summary) in leave_out.CARD.read_text(), "run python -m training.evaluation.trials --report"
    assert [t["trial"] for t in summary["trials"]] == [t.name for t in trials.TRIALS]
