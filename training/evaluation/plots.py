"""Figures for the model card and the tracked runs: training curves, the confusion matrix, experiment comparisons.

    python -m training.lifecycle.experiments --report     # redraws models/experiments.png from the tracking store

Matplotlib is a development dependency; it is imported inside each function (Agg backend: no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch, training (augmented) against validation."""
    plt = _pyplot()
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
    """The 10x10 confusion matrix on a log colour scale (the diagonal would drown everything else)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow([[math.log1p(v) for v in row] for row in confusion], cmap="Blues")
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if i == j else "black")
    ax.set(xticks=range(len(confusion)), yticks=range(len(confusion)), xlabel="predicted", ylabel="true")
    ax.set_title(f"MNIST test set: {accuracy:.2%} accuracy")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_experiments(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> None:
    """Validation accuracy and training loss per epoch, one line per experiment: {name: {metric: [(step, value)]}}."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, metrics in curves.items():
        for ax, key in ((ax1, "train_loss"), (ax2, "val_accuracy")):
            points = sorted(metrics.get(key, []))
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=name)
    ax1.set(
        xlabel="epoch", ylabel="cross-entropy (augmented batches)", title="Training loss (smoothing raises its floor)"
    )
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy (5,000 held-out images)", ylim=(0.985, 1.0))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_not_digit(curve: list[tuple[float, float, float]], chosen: tuple[float, float], path: Path) -> None:
    """The not-a-digit trade-off on validation: non-digits flagged against the digits given up (called "not a
    digit"), one point per threshold on a log scale, the chosen threshold marked (`curve`: (threshold, digits kept,
    non-digits flagged); `chosen`: kept, flagged)."""
    plt = _pyplot()
    floor = 5e-5  # "none given up" on a log axis: below one validation digit in 10,000
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot([max(1 - k, floor) for _, k, _ in curve], [f for _, _, f in curve], marker=".", markersize=4,
            label="thresholds")  # fmt: skip
    point = (max(1 - chosen[0], floor), chosen[1])
    ax.plot(*point, "o", color="crimson", markersize=9, label="chosen")
    ax.annotate(f"digits kept {chosen[0]:.2%}\nnon-digits flagged {chosen[1]:.2%}", point, textcoords="offset points",
                xytext=(12, -36))  # fmt: skip
    ax.set_xscale("log")
    ax.set(
        xlabel='validation digits called "not a digit" (plain, re-drawn and pen-drawn; log scale)',
        ylabel="validation non-digits flagged",
        title='"Not a digit": the trade-off the threshold picks from',
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
