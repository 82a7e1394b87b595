"""MNIST for training: the files (downloaded by torchvision, or placed from an offline folder), seeded splits, and the
batch augmentation that moves MNIST towards digits drawn on a canvas.

    make data MNIST_DIR=/path/to/mnist      # = python -c "from training import dataset; ..." (place_mnist)

MNIST comes through torchvision: downloaded on a machine with internet, or, offline, placed from the folder that
`MNIST_DIR` (or train.py's `--data-dir`) names, which holds the four IDX files (`.gz` or not). They are put
uncompressed in `data/MNIST/raw/`, where torchvision finds them and downloads nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets

from config.paths import DATA_DIR
from training.recipe import Augmentation

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass
class Split:
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


# ----------------------------------------------------------------------------------------------------------------
# Data


def place_mnist(source: Path, root: Path = DATA_DIR) -> Path:
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


def load_mnist(data_dir: str | None, root: Path = DATA_DIR) -> tuple[Split, Split, dict[str, str]]:
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


def augment(images: torch.Tensor, generator: torch.Generator, strength: Augmentation) -> torch.Tensor:
    """Random affine + stroke-thickness changes, as strong as the recipe's `strength`, for a (N, 1, 28, 28) batch
    in [0, 1]."""
    n = images.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(strength.max_rotation_deg))
    scale = 1 + uniform(strength.max_scale)
    shear = uniform(strength.max_shear)
    shift = torch.stack([uniform(strength.max_shift_px), uniform(strength.max_shift_px)], dim=1) * (
        2 / images.shape[-1]
    )
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Inverse map (output -> input coordinates) as affine_grid expects: rotation/scale, then shear along x.
    theta = torch.stack(
        [torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1), torch.stack([sin, cos + shear * sin, shift[:, 1]], 1)],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    pick = torch.rand(n, generator=generator)
    thicker = (pick < strength.p_thicker).view(n, 1, 1, 1)
    thinner = ((pick >= strength.p_thicker) & (pick < strength.p_thicker + strength.p_thinner)).view(n, 1, 1, 1)
    dilated = 0.5 * (out + F.max_pool2d(out, 3, stride=1, padding=1))
    eroded = (out - F.max_pool2d(-out, 3, stride=1, padding=1).neg()).clamp(min=0)  # out minus its erosion
    out = torch.where(thicker, dilated, torch.where(thinner, (out - 0.5 * eroded).clamp(min=0), out))
    solid = (torch.rand(n, generator=generator) < strength.p_solid).view(n, 1, 1, 1)
    return torch.where(solid, ((out - 0.25) * 2.5).clamp(0, 1), out)
