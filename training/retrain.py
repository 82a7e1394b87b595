"""Retraining from user feedback: the labelled predictions in the app's database fine-tune the production model.

    make retrain        # = python train.py --retrain (DATABASE_URL etc. as for the app; MNIST_DIR offline)

1. Reads every labelled prediction (the 28x28 image the model saw and the user's answer) from the database the app
   logs to, and snapshots it (training.feedback); refuses below `min_feedback` rows or with no database, before
   any run is recorded.
2. Fine-tunes the production model on MNIST with 80 % of the rows mixed into every batch (oversampled, augmented
   like MNIST), evaluates on the official test set and on the held-out 20 % before and after, and writes
   `models/candidate.pth` + `models/candidate.json`, a tracked run and a registered version. `models/model.pth` is
   never touched: shipping the candidate is the gated `make promote VERSION=N`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from inference.network import Checkpoint, knows_not_digit, load_checkpoint
from training.dataset import Split, load_mnist, split_validation
from training.feedback import Feedback, drop_not_digit, prepare
from training.loop import evaluate, fit
from training.synthetic.mixes import with_negatives, with_others
from training.recipe import CANDIDATE_PATH, Recipe, portable
from training.lifecycle.record import data_hash, record_run, track
from training.lifecycle.registry import Run


def retrain(recipe: Recipe) -> int:
    """Snapshot the feedback, then fine-tune on it in a tracked run; exit code 2 when retraining is refused."""
    feedback = prepare(recipe)
    if feedback is None:
        return 2
    recipe = recipe.named("retrain")
    return track(recipe, "retrain", lambda device, run: fine_tune(recipe, device, run, feedback))


def like_base(recipe: Recipe, base: Checkpoint) -> Recipe:
    """Fine-tune the way the base was trained (its label smoothing and weight EMA): the EMA starts at the base's
    weights and keeps the candidate near them, which is what holds the official accuracy while it learns the
    feedback."""
    base_recipe = base.meta.get("recipe", {})
    return recipe.with_defaults(float(base_recipe.get("label_smoothing") or 0.0), float(base_recipe.get("ema") or 0.0))


def training_data(recipe: Recipe, with_not_digit: bool) -> tuple[Split, Split, Split, Any, dict[str, str]]:
    """MNIST's training and validation splits (with the drawn non-digits when the base has the class, or the 11th
    class would be forgotten), the test split, the (validation digits, non-digits) pair for the threshold, and the
    data's digests."""
    full_train, test_split, digests = load_mnist(recipe.data_dir)
    train_split, val_split = split_validation(full_train, recipe.validation_size, recipe.seed)
    if not with_not_digit:
        return train_split, val_split, test_split, None, digests
    train_split, val_negatives = with_negatives(train_split, val_split, recipe)
    return train_split, with_others(val_split, val_negatives), test_split, (val_split, val_negatives), digests


def fine_tune(recipe: Recipe, device: torch.device, run: Run, feedback: Feedback) -> int:
    """Fine-tune the base (production) model on MNIST + the feedback rows; write and register the candidate."""
    torch.manual_seed(recipe.seed)
    base = load_checkpoint(recipe.base)
    recipe = like_base(recipe, base)
    model = base.model.to(memory_format=torch.contiguous_format).to(device)
    has_class = knows_not_digit(base.model)
    if not has_class:  # a 10-class base cannot learn "Not a digit" answers: fine-tune on the digits only
        feedback = drop_not_digit(feedback)
    before = evaluate(model, feedback.holdout, device=device)["accuracy"]
    model.set_calibration(temperature=1.0)  # trained on raw logits; record_run fits the candidate's own temperature
    train_split, validation, test_split, not_digit_val, digests = training_data(recipe, has_class)
    print(
        f"fine-tuning {recipe.base} (version {base.version}) on {len(train_split)} MNIST images + "
        f"{len(feedback.train)} feedback rows ({recipe.feedback_per_batch} per batch); device {device}"
    )
    run.set_tags({"data_sha256": data_hash({**digests, "feedback": feedback.manifest_sha256})})
    run.log_params({**recipe.portable(), "feedback_rows": feedback.rows, "base_version": base.version})
    schedule = (recipe.epochs_for(recipe.finetune_epochs), recipe.finetune_lr)
    result = fit(model, (train_split, validation), recipe, device, run, schedule, feedback.train, keep_last=True)
    after = evaluate(result.model, feedback.holdout)["accuracy"]
    run.log_metrics({"feedback_holdout_before": before, "feedback_holdout_after": after})
    out: Path = recipe.out or CANDIDATE_PATH
    facts = {
        "data_sha256": digests,
        "base_version": base.version,
        "base_model_version": base.meta.get("model_version"),
        "feedback_snapshot": portable(feedback.folder),
        "feedback_manifest_sha256": feedback.manifest_sha256,
    }
    meta = record_run(result, test_split, recipe, run, out, feedback.folder, facts, not_digit_val)
    write_summary(run, out, feedback, (before, after), {**meta, "base_version": base.version})
    return 0


def write_summary(run: Run, out: Path, feedback: Feedback, holdout: tuple[float, float], meta: dict[str, Any]) -> None:
    """`candidate.json` beside the candidate: what `make promote` and the drill read first."""
    before, after = holdout
    summary = {
        "official_test_accuracy": meta["test_accuracy"],
        "feedback_holdout_before": before,
        "feedback_holdout_after": after,
        "feedback_rows": feedback.rows,
        "holdout_rows": len(feedback.holdout),
        "run_id": meta["run_id"],
        "version": meta["model_version"],
        "base_version": meta["base_version"],
        "base_model_version": meta.get("base_model_version"),
        "checkpoint": portable(out) or str(out),
        "snapshot": portable(feedback.folder) or str(feedback.folder),
        "dry_run": meta["dry_run"],
        "trained_at": meta["trained_at"],
    }
    summary_path = out.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    run.log_artifact(summary_path)
    run.log_artifact(feedback.folder / "manifest.json")
    print(
        f"feedback hold-out ({len(feedback.holdout)} rows): {before:.1%} before, {after:.1%} after; "
        f"official test {meta['test_accuracy']:.2%}; wrote {out} and {summary_path}"
    )
