"""Train and evaluate the MNIST digit classifier.

    python train.py                                  # train, keep the best checkpoint -> models/model.pth
    python train.py --dry-run --out /tmp/m.pth       # a few batches end to end (tests, CI)
    python train.py --evaluate models/model.pth      # test-set report + models/confusion_matrix.png

MNIST comes through torchvision: downloaded on a machine with internet, or, offline, placed from the folder that
`MNIST_DIR` (or `--data-dir`) names, which holds the four IDX files (`.gz` or not). They are put uncompressed in
`data/MNIST/raw/`, where torchvision finds them and downloads nothing.

Recipe: 5,000 of the 60,000 training images are held out (seeded) for validation, which picks the epoch to keep and
stops early; the official 10,000 test images are only reported on, never used to choose anything. Training batches
are augmented on the fly, on whole batches at once, towards digits drawn on a canvas: small rotations, scale, shear
and shifts, thicker and thinner strokes, and hard-edged solid strokes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision import datasets
from tqdm import tqdm

from utils import (
    CLASSES,
    DEFAULT_MODEL_PATH,
    PROJECT_DIR,
    MNISTClassifier,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)

DATA_ROOT = PROJECT_DIR / "data"
DRY_RUN_OUT = DATA_ROOT / "dry-run" / "model.pth"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
VALIDATION_SIZE = 5_000
DRY_RUN_BATCHES = 3
EVAL_BATCH_SIZE = 1_000

# Augmentation strengths (per image, uniform in [-x, x] unless noted). Modest on purpose: preprocessing already
# normalises size and position, the model only has to absorb what remains.
MAX_ROTATION_DEG = 12.0
MAX_SCALE = 0.12  # zoom factor in [1 - x, 1 + x]
MAX_SHEAR = 0.15
MAX_SHIFT_PX = 2.0
P_THICKER = 0.25  # half-step dilation (mean of the image and its 3x3 max-pool): fat pen
P_THINNER = 0.15  # soften-erode strokes: thin pen
P_SOLID = 0.3  # harden edges: canvas strokes are uniform, not pen-pressure grey


@dataclass
class Split:
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


# ----------------------------------------------------------------------------------------------------------------
# Data


def place_mnist(source: Path, root: Path = DATA_ROOT) -> Path:
    """Copy the four IDX files from `source` (`.gz` or not) into `root/MNIST/raw/`, uncompressed; return raw dir."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        target = raw / name
        if target.is_file() and target.stat().st_size > 0:
            continue
        plain, packed = source / name, source / f"{name}.gz"
        tmp = target.with_suffix(".part")
        if plain.is_file():
            shutil.copyfile(plain, tmp)
        elif packed.is_file():
            with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            raise FileNotFoundError(f"{source} has neither {name} nor {name}.gz (the four MNIST IDX files).")
        tmp.replace(target)  # atomic: an interrupted copy never looks complete
    return raw


def load_mnist(data_dir: str | None, root: Path = DATA_ROOT) -> tuple[Split, Split, dict[str, str]]:
    """(train 60k, test 10k, sha256 of the raw files) through torchvision, placing offline files first."""
    if data_dir:
        place_mnist(Path(data_dir), root)
    splits = []
    for train in (True, False):
        ds = datasets.MNIST(root=str(root), train=train, download=True)
        images = ds.data.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28)
        splits.append(Split(images, ds.targets.long()))
    raw = root / "MNIST" / "raw"
    digests = {name: hashlib.sha256((raw / name).read_bytes()).hexdigest() for name in MNIST_FILES}
    return splits[0], splits[1], digests


def split_validation(full: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Seeded random hold-out of `size` training images for validation."""
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    val, train = order[:size], order[size:]
    return Split(full.images[train], full.labels[train]), Split(full.images[val], full.labels[val])


# ----------------------------------------------------------------------------------------------------------------
# Augmentation (whole batches at once: one affine_grid/grid_sample call is far faster than per-image PIL on 2 cores)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random affine + stroke-thickness changes for a (N, 1, 28, 28) batch in [0, 1]."""
    n = images.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(MAX_ROTATION_DEG))
    scale = 1 + uniform(MAX_SCALE)
    shear = uniform(MAX_SHEAR)
    shift = torch.stack([uniform(MAX_SHIFT_PX), uniform(MAX_SHIFT_PX)], dim=1) * (2 / images.shape[-1])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Inverse map (output -> input coordinates) as affine_grid expects: rotation/scale, then shear along x.
    theta = torch.stack(
        [torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1), torch.stack([sin, cos + shear * sin, shift[:, 1]], 1)],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    pick = torch.rand(n, generator=generator)
    thicker = (pick < P_THICKER).view(n, 1, 1, 1)
    thinner = ((pick >= P_THICKER) & (pick < P_THICKER + P_THINNER)).view(n, 1, 1, 1)
    dilated = 0.5 * (out + F.max_pool2d(out, 3, stride=1, padding=1))
    eroded = (out - F.max_pool2d(-out, 3, stride=1, padding=1).neg()).clamp(min=0)  # out minus its erosion
    out = torch.where(thicker, dilated, torch.where(thinner, (out - 0.5 * eroded).clamp(min=0), out))
    solid = (torch.rand(n, generator=generator) < P_SOLID).view(n, 1, 1, 1)
    return torch.where(solid, ((out - 0.25) * 2.5).clamp(0, 1), out)


# ----------------------------------------------------------------------------------------------------------------
# Train / evaluate


def train(
    model: MNISTClassifier,
    data: Split,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    max_batches: int | None = None,
) -> tuple[float, float]:
    """One epoch over shuffled, augmented batches; returns (mean loss, accuracy) on the augmented data."""
    model.train()
    order = torch.randperm(len(data), generator=generator)
    batches = order.split(batch_size)[:max_batches] if max_batches else order.split(batch_size)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, file=sys.stdout, disable=None)
    for idx in bar:
        x = augment(data.images[idx], generator)
        y = data.labels[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return total_loss / seen, correct / seen


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: Split, max_batches: int | None = None) -> dict[str, Any]:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true, columns: predicted)."""
    model.eval()
    k = len(CLASSES)
    confusion = torch.zeros(k, k, dtype=torch.long)
    total_loss, seen = 0.0, 0
    for i, start in enumerate(range(0, len(data), EVAL_BATCH_SIZE)):
        if max_batches is not None and i >= max_batches:
            break
        x = data.images[start : start + EVAL_BATCH_SIZE]
        y = data.labels[start : start + EVAL_BATCH_SIZE]
        logits = model(x)
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
    }


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


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train (augmented)")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax2.plot(epochs, [h["train_accuracy"] for h in history], label="train (augmented)")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0.97, 1.0))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], accuracy: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow([[math.log1p(v) for v in row] for row in confusion], cmap="Blues")
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if i == j else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true")
    ax.set_title(f"MNIST test set: {accuracy:.2%} accuracy")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default, except where the help already says what an unset (None) value means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the MNIST CNN (or --evaluate a checkpoint).",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=16, help="maximum epochs (one-cycle schedule spans them)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, one-cycle)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    parser.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better val")
    parser.add_argument("--seed", type=int, default=1, help="seed for the split, init, shuffling and augmentation")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MNIST_DIR") or None,
        help="folder with the four MNIST IDX files (.gz or not) for offline use; unset: download (env MNIST_DIR)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"checkpoint path, with metrics.json and training_curves.png beside it (default: "
        f"{DEFAULT_MODEL_PATH.relative_to(PROJECT_DIR)}; {DRY_RUN_OUT.relative_to(PROJECT_DIR)} with --dry-run)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    parser.add_argument("--dry-run", action="store_true", help=f"{DRY_RUN_BATCHES} batches per epoch, 1 epoch")
    parser.add_argument("--evaluate", type=Path, metavar="CHECKPOINT", help="evaluate CHECKPOINT on the test set")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.evaluate:
        run_evaluation(args.evaluate, args.data_dir)
        return 0

    torch.manual_seed(args.seed)
    device = torch.device("cpu")  # the app serves on CPU; MNIST trains in minutes on 2 cores
    full_train, test_split, digests = load_mnist(args.data_dir)
    train_split, val_split = split_validation(full_train, VALIDATION_SIZE, args.seed)
    epochs = 1 if args.dry_run else args.epochs
    max_batches = DRY_RUN_BATCHES if args.dry_run else None
    steps_per_epoch = max_batches or math.ceil(len(train_split) / args.batch_size)

    model = MNISTClassifier().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    generator = torch.Generator().manual_seed(args.seed)
    print(
        f"train {len(train_split)}, validation {len(val_split)}, test {len(test_split)}; "
        f"{count_parameters(model):,} parameters; {args.threads} threads"
    )

    out: Path = args.out or (DRY_RUN_OUT if args.dry_run else DEFAULT_MODEL_PATH)  # a dry run never replaces the model
    out.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = train(
            model, train_split, optimizer, scheduler, args.batch_size, generator, epoch, max_batches
        )
        val = evaluate(model, val_split, max_batches)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        improved = best is None or (val["accuracy"], -val["loss"]) > (best["val_accuracy"], -best["val_loss"])
        if improved:
            best = row
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(
            f"epoch {epoch:2d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
            f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f}  {row['seconds']:.0f}s"
            + ("  *best" if improved else "")
        )
        if best is not None and epoch - int(best["epoch"]) >= args.patience:
            print(f"early stop: no better validation accuracy for {args.patience} epochs")
            break
    train_seconds = time.perf_counter() - started
    assert best is not None
    model.load_state_dict(best_state)

    test = evaluate(model, test_split, max_batches)
    print_report("test (official 10k)" if not args.dry_run else "test (dry run, partial)", test)
    meta = {
        "test_accuracy": test["accuracy"],
        "test_correct": test["correct"],
        "test_total": test["total"],
        "val_accuracy": best["val_accuracy"],
        "best_epoch": int(best["epoch"]),
        "epochs_run": len(history),
        "train_seconds": round(train_seconds, 1),
        "parameters": count_parameters(model),
        "torch_version": torch.__version__.split("+")[0],
        "data_sha256": digests,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "evaluate"},
        "dry_run": args.dry_run,
    }
    save_checkpoint(model, meta, out)
    metrics = {"history": history, "best": best, "test": test, "meta": meta}
    (out.parent / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_curves(history, out.parent / "training_curves.png")
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB), metrics.json, training_curves.png in {out.parent}")
    print(f"wall time {train_seconds / 60:.1f} min; test accuracy {test['accuracy']:.4%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
