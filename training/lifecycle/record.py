"""What a run leaves behind: the not-a-digit threshold and figures, the test report, the checkpoint with its evidence,
metrics.json and the plots, each logged to the run and registered as a version; and the MLflow run around it all.

    python train.py --evaluate models/model.pth    # run_evaluation: the report and the confusion matrix only
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from inference.network import MNISTClassifier, count_parameters, load_checkpoint, save_checkpoint
from training.evaluation import calibration
from training.dataset import Split, load_mnist
from training.synthetic.drawn import DRAWN_CHECK_SIZE
from training.loop import Fit, evaluate, pick_device, print_report
from training.synthetic.negatives import make_negatives
from training.evaluation.plots import plot_confusion, plot_curves, plot_not_digit
from training.recipe import Recipe
from training.lifecycle.registry import CHECKPOINT_ARTIFACTS, REGISTERED_MODEL, Run, git_commit


def data_hash(digests: dict[str, str]) -> str:
    """One sha256 over the data files' own digests (a tag that says which data a run saw)."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def judge_not_digit(
    model: MNISTClassifier, val: tuple[Split, Split], test: Split, recipe: Recipe, run: Run, out_dir: Path
) -> dict[str, Any]:
    """Choose the not-a-digit threshold on validation (stored in the model's config), then measure it on held-out
    non-digits and the official test: the model card's figures, logged to the run, with the trade-off plot."""
    val_digits, val_negatives = val
    size = recipe.check_size(len(val_digits))
    digits = Split(val_digits.images[:size], val_digits.labels[:size])
    choice = calibration.calibrate(model, digits, val_negatives.images, recipe)
    heldout, kinds = make_negatives(
        recipe.check_size(calibration.HELDOUT_NEGATIVES), "heldout", test.images, calibration.HELDOUT_SEED
    )
    figures = calibration.report(model, test, heldout, kinds, recipe.check_size(DRAWN_CHECK_SIZE))
    calibration.print_report(figures)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_not_digit(choice.curve, (choice.digits_kept, choice.flagged), out_dir / "not_digit_tradeoff.png")
    run.log_metrics(
        {
            "not_digit_threshold": choice.threshold,
            "temperature": choice.temperature,
            "val_digits_kept": choice.digits_kept,
            "val_not_digit_flagged": choice.flagged,
            "heldout_not_digit_flagged": figures["heldout_flagged"],
            "drawn_accepted_and_right": figures["drawn_accepted_and_right"],
            "ece_test": figures["ece_test"],
        }
    )
    return {**figures, "val_digits_kept": choice.digits_kept, "val_flagged": choice.flagged, "val_curve": choice.curve}


def record_run(
    result: Fit,
    test_split: Split,
    recipe: Recipe,
    run: Run,
    out: Path,
    reports_dir: Path,
    extra_meta: dict[str, Any],
    not_digit_val: tuple[Split, Split] | None = None,
) -> dict[str, Any]:
    """Test the kept model (an 11-class one: choose its not-a-digit threshold on `not_digit_val` = validation digits
    and non-digits first), register it, and write the checkpoint (its run and version in its metadata), metrics.json,
    the curves and the confusion matrix, each logged to the run. Returns the checkpoint's metadata."""
    not_digit = None
    if not_digit_val is not None:
        not_digit = judge_not_digit(result.model, not_digit_val, test_split, recipe, run, reports_dir)
    test = evaluate(result.model, test_split, recipe.max_batches)
    print_report("test (official 10k)" if not recipe.dry_run else "test (dry run, partial)", test)
    run.log_metrics({"test_accuracy": test["accuracy"], "test_loss": test["loss"]})
    version = run.register(description=recipe.hypothesis or "")
    meta = {
        "test_accuracy": test["accuracy"],
        "test_correct": test["correct"],
        "test_total": test["total"],
        "val_accuracy": result.best["val_accuracy"],
        "best_epoch": int(result.best["epoch"]),
        "epochs_run": len(result.history),
        "train_seconds": round(result.seconds, 1),
        "parameters": count_parameters(result.model),
        "torch_version": torch.__version__.split("+")[0],
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe.portable(),
        "dry_run": recipe.dry_run,
        "run_id": run.run_id,
        "registered_model": REGISTERED_MODEL if version else None,
        "model_version": version,
        "not_digit": not_digit,
        **extra_meta,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    reports_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(result.model, meta, out)
    metrics = {"history": result.history, "best": result.best, "test": test, "meta": meta}
    (reports_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_curves(result.history, reports_dir / "training_curves.png")
    plot_confusion(test["confusion"], test["accuracy"], reports_dir / "confusion_matrix.png")
    run.log_artifact(out, CHECKPOINT_ARTIFACTS)
    for name in ("metrics.json", "training_curves.png", "confusion_matrix.png", "not_digit_tradeoff.png"):
        if (reports_dir / name).is_file():
            run.log_artifact(reports_dir / name)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB); metrics.json, curves, confusion matrix in {reports_dir}")
    if version:
        print(f"registered {REGISTERED_MODEL} version {version} (run {run.run_id})")
        print(f"ship it through the gate: make promote VERSION={version}")
    print(f"wall time {result.seconds / 60:.1f} min; test accuracy {test['accuracy']:.4%}")
    return meta


def run_evaluation(model_path: Path, data_dir: str | None) -> dict[str, Any]:
    checkpoint = load_checkpoint(model_path)
    _, test_split, _ = load_mnist(data_dir)
    report = evaluate(checkpoint.model, test_split)
    print_report(f"{model_path} on the official MNIST test set", report)
    out_dir = model_path.parent
    plot_confusion(report["confusion"], report["accuracy"], out_dir / "confusion_matrix.png")
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out_dir / 'confusion_matrix.png'} and {out_dir / 'evaluation.json'}")
    return report


def track(recipe: Recipe, mode: str, work: Callable[[torch.device, Run], int]) -> int:
    """`work(device, run)` inside an MLflow run named for `mode` (train, dry-run, retrain) and tagged with the
    commit, the hypothesis and the device."""
    device = pick_device(recipe.device)
    print(f"device: {device}")
    tags = {"mode": mode, "git_commit": git_commit(), "hypothesis": recipe.hypothesis, "device": str(device)}
    if recipe.experiment_batch:
        tags["experiment_batch"] = recipe.experiment_batch
    run = Run(recipe.run_name or mode, tags, enabled=recipe.track)
    return finish(run, lambda: work(device, run))


def finish(run: Run, work: Callable[[], int]) -> int:
    """Run `work` and close the MLflow run as FINISHED or FAILED (an interrupted run must not look finished)."""
    try:
        code = work()
    except BaseException:
        run.finish("FAILED")
        raise
    run.finish("FINISHED" if code == 0 else "FAILED")
    return code
