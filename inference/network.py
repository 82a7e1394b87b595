"""The classifier: a small CNN (`MNISTClassifier`), the MNIST normalisation constants, and the checkpoint format.

    python -c "from inference.network import load_checkpoint; print(load_checkpoint().meta['test_accuracy'])"

A checkpoint holds tensors and plain config only (loaded with `weights_only=True`): the weights, the architecture
config the model is rebuilt from, and the metadata that is its evidence (figures, recipe, registry version).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from config.paths import DEFAULT_MODEL_PATH
from inference.labels import CLASSES

# MNIST normalisation (mean/std of the training pixels in [0, 1]); stored in the checkpoint and applied inside the
# model, so callers feed plain [0, 1] images.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class ModelLoadError(RuntimeError):
    """The checkpoint is missing, corrupt or does not fit the model class."""


class MNISTClassifier(nn.Module):
    """A small VGG-style CNN: five 3x3 conv layers with batch norm in three stages, then a dropout classifier.

    Input (N, 1, 28, 28) in [0, 1], white ink on black; output (N, 10) logits, or (N, 11) when the model also
    learnt "not a digit" (index 10, `NOT_DIGIT`). Normalisation happens here, with the
    mean/std the checkpoint carries, so no caller can forget or duplicate it. One conv at full resolution and the
    depth at 14x14 and 7x7 keeps it fast on a CPU (a millisecond or so per image, one thread: `make bench`).
    """

    mean: torch.Tensor  # buffers, saved in the state_dict
    std: torch.Tensor

    def __init__(
        self,
        channels: tuple[int, int, int] = (32, 48, 96),
        hidden: int = 128,
        dropout: float = 0.3,
        mean: float = MNIST_MEAN,
        std: float = MNIST_STD,
        num_classes: int = len(CLASSES),
        reject_threshold: float = 0.5,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "channels": list(channels),
            "hidden": hidden,
            "dropout": dropout,
            "mean": mean,
            "std": std,
            "num_classes": num_classes,
            "reject_threshold": reject_threshold,
            "temperature": temperature,
        }
        if num_classes not in (len(CLASSES), len(CLASSES) + 1):
            raise ValueError(f"num_classes must be 10 (digits) or 11 (digits + not a digit), got {num_classes}")
        # With an 11th class, an input is called "not a digit" when that class's probability reaches this (chosen on
        # a validation split by train.py and stored in the checkpoint's config).
        self.reject_threshold = reject_threshold
        # Logits are divided by this (fitted on validation by calibration.py after training; 1 while training), so
        # the confidences a user reads are as often right as they say: label smoothing alone leaves them too low.
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        c1, c2, c3 = channels

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(1, c1), nn.MaxPool2d(2),  # (N, c1, 14, 14)
            *conv(c1, c2), *conv(c2, c2), nn.MaxPool2d(2),  # (N, c2, 7, 7)
            *conv(c2, c3), *conv(c3, c3), nn.MaxPool2d(2),  # (N, c3, 3, 3)
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c3 * 3 * 3, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        logits = self.classifier(self.features(x))
        return logits if self.temperature == 1.0 else logits / self.temperature

    def set_calibration(self, temperature: float | None = None, reject_threshold: float | None = None) -> None:
        """Set what calibration.py chose on validation; the config (saved in the checkpoint) follows."""
        if temperature is not None:
            self.temperature = self.config["temperature"] = float(temperature)
        if reject_threshold is not None:
            self.reject_threshold = self.config["reject_threshold"] = float(reject_threshold)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def knows_not_digit(model: nn.Module) -> bool:
    """Whether the model has the 11th output, "not a digit" (checkpoints from before it have ten)."""
    config = getattr(model, "config", {})
    return int(config.get("num_classes", len(CLASSES))) > len(CLASSES)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with the metadata (evidence) stored beside its weights."""

    model: MNISTClassifier
    meta: dict[str, Any]
    path: Path
    version: str  # first 12 hex digits of the file's sha256: what the predictions log records


def save_checkpoint(model: MNISTClassifier, meta: dict[str, Any], path: str | Path) -> None:
    """Write weights + architecture config + metadata: everything `load_checkpoint` needs, nothing pickled."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": dict(model.config), "meta": meta}, Path(path))


def fuse_batch_norm(model: MNISTClassifier) -> MNISTClassifier:
    """Fold each batch norm into the conv or dense layer before it (eval mode: BN is a fixed affine map), in place:
    the same answers to float rounding, a seventh less time per image. For serving only: the fused state_dict no
    longer fits a fresh `MNISTClassifier`, so training paths load without it."""
    for block in (model.features, model.classifier):
        layers = list(block)
        for k, (layer, after) in enumerate(zip(layers, layers[1:])):
            if isinstance(layer, nn.Conv2d) and isinstance(after, nn.BatchNorm2d):
                block[k], block[k + 1] = fuse_conv_bn_eval(layer, after), nn.Identity()
            elif isinstance(layer, nn.Linear) and isinstance(after, nn.BatchNorm1d):
                block[k], block[k + 1] = fuse_linear_bn_eval(layer, after), nn.Identity()
    return model


def load_checkpoint(model_path: str | Path = DEFAULT_MODEL_PATH, fused: bool = False) -> Checkpoint:
    """Load a checkpoint safely (`weights_only=True`) into an eval-mode model, or raise `ModelLoadError`; `fused`
    folds its batch norms for serving (`fuse_batch_norm`)."""
    path = Path(model_path)
    fix = "Run `make train` to create it (or `git checkout models/model.pth` to restore the shipped one)."
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} not found. {fix}")
    try:
        blob = path.read_bytes()
        raw = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip error means the file is not a usable checkpoint
        raise ModelLoadError(f"Model file {path} is corrupt or not a PyTorch checkpoint ({exc}). {fix}") from exc
    if not isinstance(raw, dict) or not {"state_dict", "config"} <= raw.keys():
        raise ModelLoadError(f"Model file {path} is not an MNISTClassifier checkpoint (no state_dict/config). {fix}")
    try:
        config = dict(raw["config"])
        config["channels"] = tuple(config["channels"])
        model = MNISTClassifier(**config)
        model.load_state_dict(raw["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"Model file {path} does not fit MNISTClassifier ({exc}). {fix}") from exc
    model.eval()
    if fused:
        fuse_batch_norm(model)
    # Channels-last: the layout oneDNN's CPU convolutions run fastest in, for one image as for a batch.
    model = model.to(memory_format=torch.channels_last)
    version = hashlib.sha256(blob).hexdigest()[:12]
    return Checkpoint(model=model, meta=dict(raw.get("meta", {})), path=path, version=version)
