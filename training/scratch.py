"""Training from scratch: MNIST plus the drawn non-digits and canvas-drawn digits, a new model (or one warm-started
from a checkpoint), the epoch loop, and the run's record.

    python train.py                  # the full recipe: a tracked run and a new registered version
    python train.py --dry-run        # a few batches end to end (tests, CI)

5,000 of the 60,000 training images are held out (seeded) for validation, which picks the epoch to keep and stops
early; the official 10,000 test images are only reported on, never used to choose anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import torch

from inference.labels import CLASSES
from inference.network import MNISTClassifier, count_parameters, load_checkpoint, save_checkpoint
from training.dataset import Split, load_mnist, split_validation
from training.loop import fit
from training.synthetic.mixes import with_negatives, with_others
from training.recipe import DRY_RUN_OUT, EMA_DECAY, LABEL_SMOOTHING, RUNS_DIR, Recipe
from training.lifecycle.record import data_hash, record_run, track
from training.lifecycle.registry import Run


def run(recipe: Recipe) -> int:
    """`train_from_scratch` as a tracked run (train.py's default action, and each of `make experiments`)."""
    mode = "dry-run" if recipe.dry_run else "train"
    recipe = recipe.named(mode)  # the run's folder carries its name
    return track(recipe, mode, lambda device, run: train_from_scratch(recipe, device, run))


def train_from_scratch(recipe: Recipe, device: torch.device, run: Run) -> int:
    """Full training (or a dry run), registered as a new version. Staged (the default with negatives): stage 1
    trains the ten digits from random weights on MNIST and is saved as `digits.pth` beside the run's checkpoint;
    stage 2 warm-starts an 11-class model from it and learns "not a digit". Otherwise one stage, from random
    weights or `init_from` a checkpoint's."""
    recipe = recipe.with_defaults(LABEL_SMOOTHING, EMA_DECAY)
    torch.manual_seed(recipe.training_seed)
    full_train, test_split, digests = load_mnist(recipe.data_dir)
    train_split, val_split = split_validation(full_train, recipe.validation_size, recipe.seed)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = recipe.out or (DRY_RUN_OUT if recipe.dry_run else RUNS_DIR / f"{stamp}-{recipe.run_name}" / "model.pth")
    extra_meta: dict[str, Any] = {"data_sha256": digests, "command": recipe.command}
    run.set_tags({"data_sha256": data_hash(digests)})
    digits_model = digit_stage(recipe, (train_split, val_split), device, run, out.with_name("digits.pth"))
    val_negatives: Split | None = None
    if recipe.negatives:
        train_split, val_negatives = with_negatives(train_split, val_split, recipe)
    classes = len(CLASSES) + (1 if recipe.negatives else 0)
    model, recipe = new_model(recipe, classes, extra_meta, digits_model)
    model = model.to(device)
    print(
        f"train {len(train_split)}, validation {len(val_split)}, test {len(test_split)}; "
        f"{count_parameters(model):,} parameters; {torch.get_num_threads()} threads; device {device}"
    )
    run.log_params({**recipe.portable(), "parameters": count_parameters(model)})
    data = (train_split, with_others(val_split, val_negatives))
    warm = digits_model is not None or recipe.init_from is not None
    schedule = (recipe.epochs_for(recipe.epochs), recipe.not_digit_lr if warm else recipe.lr)
    offset = recipe.epochs_for(recipe.digit_epochs) if digits_model is not None else 0
    result = fit(model, data, recipe, device, run, schedule, step_offset=offset)
    val = (val_split, val_negatives) if val_negatives is not None else None
    record_run(result, test_split, recipe, run, out, out.parent, extra_meta, val)
    return 0


def digit_stage(
    recipe: Recipe, data: tuple[Split, Split], device: torch.device, run: Run, path: Path
) -> MNISTClassifier | None:
    """Stage 1 of a staged recipe: the ten digits from random weights on MNIST alone, saved to `path` (what
    leave-family-out's folds start from: it has seen no non-digit and no drawn style). None when not staged."""
    if not recipe.staged:
        return None
    model = new_model(recipe, len(CLASSES), {})[0].to(device)
    print(f"stage 1, the digits: {count_parameters(model):,} parameters, {len(data[0])} MNIST images")
    # The rotation task belongs to stage 2 (the one that learns "not a digit"): stage 1 stays today's digits.
    digits_recipe = dataclasses.replace(recipe, rotation_weight=0.0)
    result = fit(model, data, digits_recipe, device, run, (recipe.epochs_for(recipe.digit_epochs), recipe.lr))
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"stage": "digits", "recipe": recipe.portable(), "val_accuracy": result.best["val_accuracy"]}
    save_checkpoint(result.model, meta, path)
    print(f"stage 1 done in {result.seconds / 60:.1f} min: validation {result.best['val_accuracy']:.2%}; {path}")
    print("stage 2, not a digit:")
    return result.model


def new_model(
    recipe: Recipe, classes: int, extra_meta: dict[str, Any], digits: MNISTClassifier | None = None
) -> tuple[MNISTClassifier, Recipe]:
    """The recipe's architecture with random weights; with `digits` (stage 1's model), its weights; with
    `init_from`, that checkpoint's architecture and weights (its version noted in `extra_meta`). Returned with the
    recipe as it was trained: a warm start's takes the base's architecture."""
    if digits is not None:
        model = MNISTClassifier(tuple(digits.config["channels"]), recipe.hidden, recipe.dropout, num_classes=classes)
        warm_start(model, digits.to(memory_format=torch.contiguous_format))
        return model, recipe
    if not recipe.init_from:
        widths = (recipe.channels[0], recipe.channels[1], recipe.channels[2])
        return MNISTClassifier(widths, recipe.hidden, recipe.dropout, num_classes=classes), recipe
    base = load_checkpoint(recipe.init_from)
    config = base.model.config
    recipe = dataclasses.replace(
        recipe, channels=list(config["channels"]), hidden=int(config["hidden"]), dropout=float(config["dropout"])
    )
    extra_meta.update(init_from=base.version, init_from_model_version=base.meta.get("model_version"))
    model = MNISTClassifier(tuple(config["channels"]), recipe.hidden, recipe.dropout, num_classes=classes)
    warm_start(model, base.model)
    print(f"starting from {recipe.init_from} (version {base.version}): its weights and architecture")
    return model, recipe


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
