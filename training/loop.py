"""The training loop: one epoch (`train`), a report on a split (`evaluate`), and the epoch loop that keeps the best
epoch (`fit`), in the order pytorch/examples' mnist/main.py reads.

    python train.py --dry-run        # runs all three for a few batches

The device is chosen once (`pick_device`) and passed in. Training batches are augmented on the fly
(training.dataset.augment) towards digits drawn on a canvas; an EMA of the weights is what gets validated and kept.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from inference.labels import CLASSES, NOT_DIGIT
from inference.network import MNISTClassifier
from training.auxiliary import RotationHead, logits_and_rotation_loss
from training.dataset import Split, augment
from training.recipe import Recipe
from training.lifecycle.registry import Run

EVAL_BATCH_SIZE = 1_000
CPU = torch.device("cpu")


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU. Chosen once; the model and every batch go there."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class Optimization:
    """What one epoch steps: the optimizer, its schedule, the weights' EMA (or None), the shuffling generator and
    the rotation head of the auxiliary task (None: the recipe's rotation_weight is 0)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    generator: torch.Generator
    rotation: RotationHead | None = None


def train(
    model: MNISTClassifier,
    data: Split,
    opt: Optimization,
    epoch: int,
    recipe: Recipe,
    device: torch.device = CPU,
    extra: Split | None = None,
) -> tuple[float, float]:
    """One epoch over shuffled, augmented batches; returns (mean loss, accuracy) on the augmented data.

    `extra` (feedback rows when fine-tuning) adds `recipe.feedback_per_batch` images drawn with replacement to every
    batch: a few hundred corrections would otherwise be a rounding error beside 55,000 MNIST images."""
    model.train()
    order = torch.randperm(len(data), generator=opt.generator)
    batches = order.split(recipe.batch_size)[: recipe.max_batches]
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, file=sys.stdout, disable=None)
    for idx in bar:
        images, labels = data.images[idx], data.labels[idx]
        if extra is not None and recipe.feedback_per_batch > 0:
            pick = torch.randint(len(extra), (recipe.feedback_per_batch,), generator=opt.generator)
            images = torch.cat([images, extra.images[pick]])
            labels = torch.cat([labels, extra.labels[pick]])
        # Channels-last: the layout oneDNN's CPU convolutions are fastest in.
        x = augment(images, opt.generator, recipe.augmentation).to(device).contiguous(memory_format=torch.channels_last)
        y = labels.to(device)
        if opt.rotation is None:
            logits, auxiliary = model(x), torch.zeros((), device=device)
        else:
            logits, auxiliary = logits_and_rotation_loss(model, opt.rotation, x, labels, opt.generator)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing or 0.0)
        loss = loss + recipe.rotation_weight * auxiliary
        opt.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        opt.optimizer.step()
        opt.scheduler.step()
        if opt.ema is not None:
            opt.ema.update_parameters(model)
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


def optimization(model: MNISTClassifier, recipe: Recipe, lr: float, epochs: int, steps_per_epoch: int) -> Optimization:
    """AdamW with a one-cycle schedule over all `epochs`, and an EMA of the weights when the recipe asks for one: the
    average of the last few hundred steps generalises a little better than the last step's weights, at no cost in
    inference. With a rotation weight, the auxiliary task's head (on the model's device) is stepped beside it."""
    rotation = None
    if recipe.rotation_weight:
        rotation = RotationHead(int(model.config["hidden"])).to(next(model.parameters()).device)
    parameters = list(model.parameters()) + (list(rotation.parameters()) if rotation is not None else [])
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=recipe.warmup_share
    )
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema), use_buffers=True) if recipe.ema else None
    generator = torch.Generator().manual_seed(recipe.training_seed)
    return Optimization(optimizer, scheduler, ema, generator, rotation)


def epoch_row(
    epoch: int, trained: tuple[float, float], val: dict[str, Any], lr: float, seconds: float
) -> dict[str, float]:
    """One epoch's figures, as the run logs them and metrics.json keeps them."""
    row = {
        "epoch": epoch,
        "train_loss": trained[0],
        "train_accuracy": trained[1],
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "val_score": validation_score(val),
        "lr": lr,
        "seconds": seconds,
    }
    if val["not_digit_recall"] is not None:
        row["val_not_digit_recall"] = val["not_digit_recall"]
    return row


def print_epoch(row: dict[str, float], epochs: int, improved: bool) -> None:
    not_digit = f" not-a-digit {row['val_not_digit_recall']:.4f}" if "val_not_digit_recall" in row else ""
    print(
        f"epoch {int(row['epoch']):2d}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}  "
        f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}{not_digit}  {row['seconds']:.0f}s"
        + ("  *best" if improved else "")
    )


def fit(
    model: MNISTClassifier,
    data: tuple[Split, Split],
    recipe: Recipe,
    device: torch.device,
    run: Run,
    schedule: tuple[int, float],
    extra: Split | None = None,
    keep_last: bool = False,
    step_offset: int = 0,
) -> Fit:
    """The epoch loop over `data` = (train, validation) for `schedule` = (epochs, peak learning rate): validation
    after each epoch (logged to the run), early stopping; the epoch with the best `validation_score` is kept (with
    `keep_last`, fine-tuning, the last one: MNIST's validation set cannot tell how well the feedback was learnt).
    `step_offset`: the epochs of an earlier stage of the same run, so its logged steps follow on."""
    (train_split, val_split), (epochs, lr) = data, schedule
    steps_per_epoch = recipe.max_batches or math.ceil(len(train_split) / recipe.batch_size)
    model = model.to(memory_format=torch.channels_last)  # in place, before the optimizer and the EMA copy see it
    opt = optimization(model, recipe, lr, epochs, steps_per_epoch)
    scored: torch.nn.Module = opt.ema.module if opt.ema is not None else model
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        trained = train(model, train_split, opt, epoch, recipe, device, extra)
        val = evaluate(scored, val_split, recipe.max_batches, device)
        row = epoch_row(epoch, trained, val, float(opt.scheduler.get_last_lr()[0]), time.perf_counter() - t0)
        history.append(row)
        run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=step_offset + epoch)
        ranked = selection_key(row["val_score"], row["val_loss"])
        improved = best is None or keep_last or ranked > selection_key(best["val_score"], best["val_loss"])
        if improved:
            best = row
            best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
        print_epoch(row, epochs, improved)
        if best is not None and epoch - int(best["epoch"]) >= recipe.patience:
            print(f"early stop: no better validation accuracy for {recipe.patience} epochs")
            break
    assert best is not None
    model.load_state_dict(best_state)
    return Fit(model.cpu(), best, history, time.perf_counter() - started)
