"""Train the MNIST digit classifier, fine-tune it on user feedback, and promote or roll back the production model.

    python train.py                  # train from scratch: a tracked run and a new registered version
    python train.py --dry-run        # a few batches end to end (tests, CI)
    python train.py --retrain        # fine-tune production on MNIST + labelled feedback -> models/candidate.pth
    python train.py --promote 7      # gate version 7, then ship it as models/model.pth (= make promote VERSION=7)
    python train.py --rollback       # restore the model production had before the last promotion
    python train.py --evaluate models/model.pth   # test-set report + models/confusion_matrix.png

Recipe: 5,000 of the 60,000 training images are held out (seeded) for validation, which picks the epoch to keep and
stops early; the official 10,000 test images are only reported on, never used to choose anything. Training batches
are augmented on the fly (dataset.augment) towards digits drawn on a canvas. Every run is an MLflow run (registry.py)
and registers a new version of `mnist-digit-classifier`; models/model.pth changes only through the promotion gate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from dataset import (  # noqa: F401  (re-exported: train.place_mnist, train.MNIST_FILES, ... stay where they were)
    DATA_ROOT,
    MNIST_FILES,
    VALIDATION_SIZE,
    Split,
    augment,
    load_mnist,
    place_mnist,
    split_validation,
)
import calibration
from drawn import canvas_drawing, pen_digits
from negatives import make_negatives
from plots import plot_confusion, plot_curves, plot_not_digit
from registry import CHECKPOINT_ARTIFACTS, REGISTERED_MODEL, Run, git_commit
from utils import (
    CLASSES,
    DEFAULT_MODEL_PATH,
    IMAGE_SIZE,
    NOT_DIGIT,
    PROJECT_DIR,
    MNISTClassifier,
    count_parameters,
    load_checkpoint,
    preprocess_image,
    save_checkpoint,
)

DRY_RUN_OUT = DATA_ROOT / "dry-run" / "model.pth"
RUNS_DIR = DATA_ROOT / "runs"  # one folder per training run: checkpoint, metrics.json, plots
CANDIDATE_PATH = DEFAULT_MODEL_PATH.with_name("candidate.pth")  # --retrain's output, waiting for the gate
DRY_RUN_BATCHES = 3
NEGATIVES_DRY_RUN = 256  # --dry-run draws this many non-digits at most (seconds, not a minute)
EVAL_BATCH_SIZE = 1_000
CPU = torch.device("cpu")
# The recipe's defaults that --retrain takes from its base instead (argparse leaves them None to tell the two apart).
LABEL_SMOOTHING = 0.05
EMA_DECAY = 0.999


# ----------------------------------------------------------------------------------------------------------------
# Train / evaluate


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU. Chosen once; the model and every batch go there."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def train(
    model: MNISTClassifier,
    data: Split,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    max_batches: int | None = None,
    device: torch.device = CPU,
    label_smoothing: float = 0.0,
    ema: AveragedModel | None = None,
    extra: Split | None = None,
    extra_per_batch: int = 0,
) -> tuple[float, float]:
    """One epoch over shuffled, augmented batches; returns (mean loss, accuracy) on the augmented data.

    `extra` (feedback rows when fine-tuning) adds `extra_per_batch` images drawn with replacement to every batch:
    a few hundred corrections would otherwise be a rounding error beside 55,000 MNIST images."""
    model.train()
    order = torch.randperm(len(data), generator=generator)
    batches = order.split(batch_size)[:max_batches] if max_batches else order.split(batch_size)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, file=sys.stdout, disable=None)
    for idx in bar:
        images, labels = data.images[idx], data.labels[idx]
        if extra is not None and extra_per_batch > 0:
            pick = torch.randint(len(extra), (extra_per_batch,), generator=generator)
            images = torch.cat([images, extra.images[pick]])
            labels = torch.cat([labels, extra.labels[pick]])
        # Channels-last: the layout oneDNN's CPU convolutions are fastest in (~1.6x per training step on 2 cores).
        x = augment(images, generator).to(device).contiguous(memory_format=torch.channels_last)
        y = labels.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return total_loss / seen, correct / seen


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, data: Split, max_batches: int | None = None, device: torch.device = CPU
) -> dict[str, Any]:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true, columns: predicted) of the
    digits (argmax over the ten digits), and of rows labelled NOT_DIGIT the share whose argmax is NOT_DIGIT."""
    model.eval()
    k = len(CLASSES)
    confusion = torch.zeros(k, k, dtype=torch.long)
    total_loss, seen = 0.0, 0
    not_digit_seen, not_digit_right = 0, 0
    for i, start in enumerate(range(0, len(data), EVAL_BATCH_SIZE)):
        if max_batches is not None and i >= max_batches:
            break
        x = data.images[start : start + EVAL_BATCH_SIZE].to(device)
        y = data.labels[start : start + EVAL_BATCH_SIZE]
        outputs = model(x).cpu()
        others = y == NOT_DIGIT  # drawn non-digits, or feedback that said "not a digit"
        not_digit_seen += int(others.sum())
        not_digit_right += int((outputs[others].argmax(1) == NOT_DIGIT).sum()) if outputs.shape[1] > k else 0
        logits = outputs[:, :k]  # the digits; the threshold on "not a digit" is calibration.py's
        digits = y < k
        logits, y = logits[digits], y[digits]
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        seen += len(y)
        confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k).view(k, k)
    tp = confusion.diag().double()
    precision = tp / confusion.sum(0).clamp(min=1)
    recall = tp / confusion.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": float(tp.sum()) / max(seen, 1),
        "correct": int(tp.sum()),
        "total": seen,
        "per_class": {
            str(c): {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c])} for c in CLASSES
        },
        "confusion": confusion.tolist(),
        "not_digit_total": not_digit_seen,
        "not_digit_recall": not_digit_right / not_digit_seen if not_digit_seen else None,
    }


def validation_score(report: dict[str, Any]) -> float:
    """What an epoch is ranked by: the share of validation inputs answered right, digits and drawn non-digits alike
    (the digit accuracy when there are no non-digits). Digits alone would keep an epoch that has not learnt the
    "not a digit" class yet."""
    right = report["correct"] + (report["not_digit_recall"] or 0.0) * report["not_digit_total"]
    return right / max(report["total"] + report["not_digit_total"], 1)


def print_report(name: str, report: dict[str, Any]) -> None:
    print(
        f"{name}: accuracy {report['accuracy']:.4%} ({report['correct']}/{report['total']}), loss {report['loss']:.4f}"
    )
    print("digit  precision  recall     f1")
    for c, m in report["per_class"].items():
        print(f"{c:>5}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}")
    print("confusion (rows: true digit, columns: predicted)")
    for c, row in zip(CLASSES, report["confusion"]):
        print(f"{c:>3} " + " ".join(f"{v:5d}" for v in row))


def selection_key(accuracy: float, loss: float) -> tuple[float, float]:
    """How epochs (and experiments) are ranked: validation accuracy, ties broken by the lower validation loss."""
    return accuracy, -loss


@dataclass
class Fit:
    """What a training loop produced: the best model (loaded), its epoch's row, and every epoch's row."""

    model: MNISTClassifier
    best: dict[str, float]
    history: list[dict[str, float]]
    seconds: float


def fit(
    model: MNISTClassifier,
    train_split: Split,
    val_split: Split,
    args: argparse.Namespace,
    device: torch.device,
    run: Run,
    epochs: int,
    lr: float,
    extra: Split | None = None,
    keep_last: bool = False,
) -> Fit:
    """The epoch loop: AdamW + one-cycle, optional EMA weights, validation after each epoch (logged to the run),
    early stopping; the epoch with the best `validation_score` is kept (with `keep_last`, fine-tuning, the last
    one: MNIST's validation set cannot tell how well the feedback was learnt)."""
    max_batches = DRY_RUN_BATCHES if args.dry_run else None
    steps_per_epoch = max_batches or math.ceil(len(train_split) / args.batch_size)
    model = model.to(memory_format=torch.channels_last)  # in place, before the optimizer and the EMA copy see it
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    # EMA of the weights (and batch-norm statistics): the average of the last few hundred steps generalises a little
    # better than the last step's weights, at no cost in inference.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True) if args.ema else None
    scored: torch.nn.Module = ema.module if ema is not None else model
    generator = torch.Generator().manual_seed(args.seed)
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = train(
            model, train_split, optimizer, scheduler, args.batch_size, generator, epoch, max_batches, device,
            args.label_smoothing, ema, extra, args.feedback_per_batch if extra is not None else 0,
        )  # fmt: skip
        val = evaluate(scored, val_split, max_batches, device)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_score": validation_score(val),
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - t0,
        }
        if val["not_digit_recall"] is not None:
            row["val_not_digit_recall"] = val["not_digit_recall"]
        history.append(row)
        run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        improved = (
            best is None
            or keep_last
            or selection_key(row["val_score"], val["loss"]) > selection_key(best["val_score"], best["val_loss"])
        )
        if improved:
            best = row
            best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
        not_digit = f" not-a-digit {row['val_not_digit_recall']:.4f}" if "val_not_digit_recall" in row else ""
        print(
            f"epoch {epoch:2d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
            f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f}{not_digit}  {row['seconds']:.0f}s"
            + ("  *best" if improved else "")
        )
        if best is not None and epoch - int(best["epoch"]) >= args.patience:
            print(f"early stop: no better validation accuracy for {args.patience} epochs")
            break
    assert best is not None
    model.load_state_dict(best_state)
    return Fit(model.cpu(), best, history, time.perf_counter() - started)


def data_hash(digests: dict[str, str]) -> str:
    """One sha256 over the data files' own digests (a tag that says which data a run saw)."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


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


def with_negatives(train_split: Split, val_split: Split, args: argparse.Namespace) -> tuple[Split, Split]:
    """The training split plus `--negatives` drawn non-digits labelled NOT_DIGIT and `--canvas-digits` digits as the
    canvas draws them (shuffled in by `train`), and the validation non-digits (a tenth as many, another seed,
    digits from the validation split) for the threshold."""
    count = min(args.negatives, NEGATIVES_DRY_RUN) if args.dry_run else args.negatives
    digits = min(args.canvas_digits, NEGATIVES_DRY_RUN) if args.dry_run else args.canvas_digits
    t0 = time.perf_counter()
    train_neg, _ = make_negatives(count, "train", train_split.images, args.seed)
    val_neg, _ = make_negatives(max(count // 10, 1), "train", val_split.images, args.seed + 1)
    drawn_digits = canvas_digits(train_split, digits, args.seed)
    print(
        f"drew {count} + {len(val_neg)} non-digits for the '{NOT_DIGIT}' class and {digits} canvas-drawn digits in "
        f"{time.perf_counter() - t0:.0f}s"
    )
    labels = torch.full((count,), NOT_DIGIT, dtype=torch.long)
    merged = Split(
        torch.cat([train_split.images, drawn_digits.images, train_neg]),
        torch.cat([train_split.labels, drawn_digits.labels, labels]),
    )
    return merged, Split(val_neg, torch.full((len(val_neg),), NOT_DIGIT, dtype=torch.long))


def with_others(digits: Split, others: Split | None) -> Split:
    """Validation digits and drawn non-digits in one split (what `fit` ranks epochs on)."""
    if others is None:
        return digits
    return Split(torch.cat([digits.images, others.images]), torch.cat([digits.labels, others.labels]))


def judge_not_digit(
    model: MNISTClassifier, val: tuple[Split, Split], test: Split, args: argparse.Namespace, run: Run, out_dir: Path
) -> dict[str, Any]:
    """Choose the not-a-digit threshold on validation (stored in the model's config), then measure it on held-out
    non-digits and the official test: the model card's figures, logged to the run, with the trade-off plot."""
    val_digits, val_negatives = val
    size = 200 if args.dry_run else len(val_digits)
    digits = Split(val_digits.images[:size], val_digits.labels[:size])
    choice = calibration.calibrate(model, digits, val_negatives.images, args.seed)
    heldout, kinds = make_negatives(
        200 if args.dry_run else calibration.HELDOUT_NEGATIVES, "heldout", test.images, calibration.HELDOUT_SEED
    )
    figures = calibration.report(model, test, heldout, kinds, 200 if args.dry_run else 2_000)
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
    args: argparse.Namespace,
    run: Run,
    out: Path,
    reports_dir: Path,
    extra_meta: dict[str, Any],
    not_digit_val: tuple[Split, Split] | None = None,
) -> dict[str, Any]:
    """Test the kept model (an 11-class one: choose its not-a-digit threshold on `not_digit_val` = validation digits
    and non-digits first), register it, and write the checkpoint (its run and version in its metadata), metrics.json,
    the curves and the confusion matrix, each logged to the run. Returns the checkpoint's metadata."""
    max_batches = DRY_RUN_BATCHES if args.dry_run else None
    not_digit = None
    if not_digit_val is not None:
        not_digit = judge_not_digit(result.model, not_digit_val, test_split, args, run, reports_dir)
    test = evaluate(result.model, test_split, max_batches)
    print_report("test (official 10k)" if not args.dry_run else "test (dry run, partial)", test)
    run.log_metrics({"test_accuracy": test["accuracy"], "test_loss": test["loss"]})
    version = run.register(description=args.hypothesis or "")
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
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dry_run": args.dry_run,
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


def train_from_scratch(args: argparse.Namespace, device: torch.device, run: Run) -> int:
    """Full training (or --dry-run): a new model from random weights (or `--init-from` a checkpoint's), registered as
    a new version."""
    args.label_smoothing = LABEL_SMOOTHING if args.label_smoothing is None else args.label_smoothing
    args.ema = EMA_DECAY if args.ema is None else args.ema
    torch.manual_seed(args.seed)
    full_train, test_split, digests = load_mnist(args.data_dir)
    train_split, val_split = split_validation(full_train, VALIDATION_SIZE, args.seed)
    val_negatives: Split | None = None
    if args.negatives:
        train_split, val_negatives = with_negatives(train_split, val_split, args)
    classes = len(CLASSES) + (1 if args.negatives else 0)
    extra_meta: dict[str, Any] = {"data_sha256": digests}
    if args.init_from:  # the checkpoint's architecture, and below its weights
        base = load_checkpoint(args.init_from)
        args.channels, args.hidden = list(base.model.config["channels"]), int(base.model.config["hidden"])
        args.dropout = float(base.model.config["dropout"])
        extra_meta.update(init_from=base.version, init_from_model_version=base.meta.get("model_version"))
    model = MNISTClassifier(tuple(args.channels), args.hidden, args.dropout, num_classes=classes)
    if args.init_from:
        warm_start(model, base.model)
        print(f"starting from {args.init_from} (version {base.version}): its weights and architecture")
    model = model.to(device)
    print(
        f"train {len(train_split)}, validation {len(val_split)}, test {len(test_split)}; "
        f"{count_parameters(model):,} parameters; {args.threads} threads; device {device}"
    )
    run.set_tags({"data_sha256": data_hash(digests)})
    run.log_params({**vars(args), "parameters": count_parameters(model)})
    epochs = 1 if args.dry_run else args.epochs
    result = fit(model, train_split, with_others(val_split, val_negatives), args, device, run, epochs, args.lr)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or (DRY_RUN_OUT if args.dry_run else RUNS_DIR / f"{stamp}-{args.run_name}" / "model.pth")
    val = (val_split, val_negatives) if val_negatives is not None else None
    record_run(result, test_split, args, run, out, out.parent, extra_meta, val)
    return 0


def warm_start(model: MNISTClassifier, base: MNISTClassifier) -> None:
    """`base`'s weights into `model` (the same architecture). A ten-class base's outputs become the first ten rows
    of an eleven-class head, whose "not a digit" row keeps its fresh initialisation."""
    state = model.state_dict()
    for key, value in base.state_dict().items():
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
        elif target.shape[1:] == value.shape[1:] and value.shape[0] == len(CLASSES) == target.shape[0] - 1:
            state[key] = torch.cat([value, target[len(CLASSES) :]])  # the head: digits copied, NOT_DIGIT fresh
        else:
            raise ValueError(f"{key}: the base's {tuple(value.shape)} does not fit {tuple(target.shape)}")
    model.load_state_dict(state)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default, except where the help already says what an unset (None) value means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def channels(text: str) -> list[int]:
    widths = [int(v) for v in text.split(",")]
    if len(widths) != 3 or min(widths) < 1:
        raise argparse.ArgumentTypeError("three positive widths, e.g. 32,48,96")
    return widths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train the MNIST CNN, fine-tune it on user feedback, or promote/roll back the production model.",
        formatter_class=DefaultsHelpFormatter,
    )
    recipe = parser.add_argument_group("recipe (training from scratch)")
    recipe.add_argument("--epochs", type=int, default=12, help="maximum epochs (one-cycle schedule spans them)")
    recipe.add_argument("--batch-size", type=int, default=128, help="training batch size")
    recipe.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, one-cycle)")
    recipe.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    recipe.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better val")
    recipe.add_argument("--seed", type=int, default=1, help="seed for the split, init, shuffling and augmentation")
    recipe.add_argument("--channels", type=channels, default=[32, 48, 96], help="conv widths of the three stages")
    recipe.add_argument("--hidden", type=int, default=128, help="width of the dense hidden layer")
    recipe.add_argument("--dropout", type=float, default=0.3, help="dropout before each dense layer")
    recipe.add_argument(
        "--negatives",
        type=int,
        default=10_000,
        help="drawn non-digits (letters, shapes, scribbles; negatives.py) for an 11th 'not a digit' class; 0: none",
    )
    recipe.add_argument(
        "--init-from",
        type=Path,
        help="start from this checkpoint's weights and architecture instead of random ones (a ten-class checkpoint "
        "gains the 'not a digit' output); the other recipe flags still apply",
    )
    recipe.add_argument(
        "--canvas-digits",
        type=int,
        default=6_000,
        help="with --negatives: digits drawn as on the canvas (half MNIST re-drawn, half pen-drawn; drawn.py)",
    )
    recipe.add_argument(
        "--label-smoothing",
        type=float,
        help=f"cross-entropy label smoothing (default: {LABEL_SMOOTHING}; --retrain: the base's)",
    )
    recipe.add_argument(
        "--ema",
        type=float,
        help=f"EMA decay of the weights per step, 0 for off (default: {EMA_DECAY}; --retrain: the base's)",
    )

    tune = parser.add_argument_group("retraining from feedback (--retrain)")
    tune.add_argument("--retrain", action="store_true", help="fine-tune production on MNIST + labelled feedback")
    tune.add_argument("--base", type=Path, default=DEFAULT_MODEL_PATH, help="the model --retrain starts from")
    tune.add_argument("--finetune-epochs", type=int, default=3, help="epochs over MNIST when fine-tuning")
    tune.add_argument("--finetune-lr", type=float, default=1e-3, help="peak learning rate when fine-tuning")
    tune.add_argument("--feedback-per-batch", type=int, default=16, help="feedback images added to every batch")
    tune.add_argument("--min-feedback", type=int, default=50, help="refuse with fewer labelled rows than this")
    tune.add_argument(
        "--snapshot-dir",
        type=Path,
        default=DATA_ROOT / "feedback",
        help="where each retrain snapshots the rows it used (a <UTC time>/ folder each)",
    )

    ops = parser.add_argument_group("the production model")
    ops.add_argument("--promote", metavar="VERSION", help="gate, then ship a registered version as models/model.pth")
    ops.add_argument("--rollback", action="store_true", help="restore the production model before the last promotion")
    ops.add_argument("--evaluate", type=Path, metavar="CHECKPOINT", help="evaluate CHECKPOINT on the test set")

    run = parser.add_argument_group("run")
    run.add_argument(
        "--data-dir",
        default=os.environ.get("MNIST_DIR") or None,
        help="folder with the four MNIST IDX files (.gz or not) for offline use; unset: download (env MNIST_DIR)",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"checkpoint path (default: {RUNS_DIR.relative_to(PROJECT_DIR)}/<time>-<run name>/model.pth, with "
        f"metrics.json and the plots beside it; {DRY_RUN_OUT.relative_to(PROJECT_DIR)} with --dry-run; "
        f"{CANDIDATE_PATH.relative_to(PROJECT_DIR)} with --retrain)",
    )
    run.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, mps")
    run.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    run.add_argument("--dry-run", action="store_true", help=f"{DRY_RUN_BATCHES} batches per epoch, 1 epoch")
    run.add_argument("--run-name", help="MLflow run name (default: train, dry-run or retrain)")
    run.add_argument("--hypothesis", default="", help="one line: what this run is expected to show (run tag)")
    run.add_argument("--experiment-batch", default="", help="tag: the `make experiments` batch this run belongs to")
    run.add_argument("--no-track", action="store_true", help="do not record the run in MLflow")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.evaluate:
        run_evaluation(args.evaluate, args.data_dir)
        return 0
    if args.promote or args.rollback:
        import promotion  # imports this module: loaded only when asked for

        return promotion.promote(args.promote, args.data_dir) if args.promote else promotion.rollback()

    device = pick_device(args.device)
    print(f"device: {device}")
    mode = "retrain" if args.retrain else "dry-run" if args.dry_run else "train"
    args.run_name = args.run_name or mode
    tags = {"mode": mode, "git_commit": git_commit(), "hypothesis": args.hypothesis, "device": str(device)}
    if args.experiment_batch:
        tags["experiment_batch"] = args.experiment_batch
    if args.retrain:
        import retrain  # imports this module: loaded only when asked for

        # Refusals (too few rows, no database) come before a run exists, so nothing is recorded or registered.
        feedback = retrain.prepare(args)
        if feedback is None:
            return 2
        run = Run(args.run_name, tags, enabled=not args.no_track)
        return finish(run, lambda: retrain.fine_tune(args, device, run, feedback))
    run = Run(args.run_name, tags, enabled=not args.no_track)
    return finish(run, lambda: train_from_scratch(args, device, run))


def finish(run: Run, work: Callable[[], int]) -> int:
    """Run `work` and close the MLflow run as FINISHED or FAILED (an interrupted run must not look finished)."""
    try:
        code = work()
    except BaseException:
        run.finish("FAILED")
        raise
    run.finish("FINISHED" if code == 0 else "FAILED")
    return code


if __name__ == "__main__":
    sys.exit(main())
