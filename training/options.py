"""train.py's flags: one group per use, each default taken from `Recipe`, and the parsed flags as a `Recipe`.

    python train.py --help

experiments.py reads its configurations' flags through the same parser, so a configuration is written exactly as
a developer would type it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import dataclasses
from pathlib import Path

from config.paths import PROJECT_DIR
from config.settings import settings
from training.recipe import CANDIDATE_PATH, DRY_RUN_BATCHES, DRY_RUN_OUT, EMA_DECAY, LABEL_SMOOTHING, RUNS_DIR, Recipe

DEFAULTS = Recipe()


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


def add_architecture(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recipe (training from scratch)")
    group.add_argument(
        "--digit-epochs",
        type=int,
        default=DEFAULTS.digit_epochs,
        help="with --negatives: stage 1, the ten digits from MNIST, this many epochs; 0: one stage",
    )
    group.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS.epochs,
        help="maximum epochs of the (last) stage (one-cycle spans them): stage 2, 'not a digit', when staged",
    )
    group.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="training batch size")
    group.add_argument("--lr", type=float, default=DEFAULTS.lr, help="peak learning rate (AdamW, one-cycle)")
    group.add_argument("--not-digit-lr", type=float, default=DEFAULTS.not_digit_lr, help="peak lr of stage 2")
    group.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay, help="AdamW weight decay")
    group.add_argument("--patience", type=int, default=DEFAULTS.patience, help="stop after this many epochs no better")
    group.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed: split, init, shuffling, augmentation")
    group.add_argument("--channels", type=channels, default=DEFAULTS.channels, help="conv widths of the 3 stages")
    group.add_argument("--hidden", type=int, default=DEFAULTS.hidden, help="width of the dense hidden layer")
    group.add_argument("--dropout", type=float, default=DEFAULTS.dropout, help="dropout before each dense layer")
    group.add_argument(
        "--label-smoothing",
        type=float,
        help=f"cross-entropy label smoothing (default: {LABEL_SMOOTHING}; --retrain: the base's)",
    )
    group.add_argument(
        "--ema",
        type=float,
        help=f"EMA decay of the weights per step, 0 for off (default: {EMA_DECAY}; --retrain: the base's)",
    )


def add_not_digit(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the 'not a digit' class")
    group.add_argument(
        "--negatives",
        type=int,
        default=DEFAULTS.negatives,
        help="drawn non-digits (letters, shapes, scribbles; training.synthetic.negatives) for an 11th class; 0: none",
    )
    group.add_argument(
        "--canvas-digits",
        type=int,
        default=DEFAULTS.canvas_digits,
        help="with --negatives: digits drawn as on the canvas (half MNIST re-drawn, half pen-drawn)",
    )
    group.add_argument(
        "--style-digits",
        type=int,
        default=DEFAULTS.style_digits,
        help="with --negatives: digits in common styles and typed in fonts (training/synthetic/styles.py)",
    )
    group.add_argument(
        "--rotation-weight",
        type=float,
        default=DEFAULTS.rotation_weight,
        help="with --negatives: weight of a self-supervised rotation loss on stage 2's digits (training.auxiliary)",
    )
    group.add_argument(
        "--leave-out",
        nargs="*",
        default=[],
        metavar="GROUP",
        help="non-digit and digit-style groups to keep out of training (leave-family-out's folds)",
    )
    group.add_argument(
        "--init-from",
        type=Path,
        help="start from this checkpoint's weights and architecture instead of random ones (a ten-class checkpoint "
        "gains the 'not a digit' output); the other recipe flags still apply",
    )


def add_retrain(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("retraining from feedback (--retrain)")
    group.add_argument("--retrain", action="store_true", help="fine-tune production on MNIST + labelled feedback")
    group.add_argument(
        "--retrain-if-needed",
        action="store_true",
        help="the loop's scheduled check (make loop): retrain, gate and maybe promote only when the labels call for it",
    )
    group.add_argument(
        "--base", type=Path, default=settings().model_path, help="the model --retrain starts from (env MODEL_PATH)"
    )
    group.add_argument("--finetune-epochs", type=int, default=DEFAULTS.finetune_epochs, help="epochs when fine-tuning")
    group.add_argument("--finetune-lr", type=float, default=DEFAULTS.finetune_lr, help="peak lr when fine-tuning")
    group.add_argument(
        "--feedback-per-batch", type=int, default=DEFAULTS.feedback_per_batch, help="feedback images per batch"
    )
    group.add_argument("--min-feedback", type=int, default=DEFAULTS.min_feedback, help="refuse with fewer rows")
    group.add_argument(
        "--snapshot-dir",
        type=Path,
        default=DEFAULTS.snapshot_dir,
        help="where each retrain snapshots the rows it used (a <UTC time>/ folder each)",
    )


def add_production(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the production model")
    group.add_argument("--promote", metavar="VERSION", help="gate, then ship a registered version as models/model.pth")
    group.add_argument("--rollback", action="store_true", help="restore the production model before the last promotion")
    group.add_argument("--evaluate", type=Path, metavar="CHECKPOINT", help="evaluate CHECKPOINT on the test set")


def add_run(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument(
        "--data-dir",
        default=DEFAULTS.data_dir,
        help="folder with the four MNIST IDX files (.gz or not) for offline use; unset: download (env MNIST_DIR)",
    )
    group.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"checkpoint path (default: {RUNS_DIR.relative_to(PROJECT_DIR)}/<time>-<run name>/model.pth, with "
        f"metrics.json and the plots beside it; {DRY_RUN_OUT.relative_to(PROJECT_DIR)} with --dry-run; "
        f"{CANDIDATE_PATH.relative_to(PROJECT_DIR)} with --retrain)",
    )
    group.add_argument(
        "--device", default=DEFAULTS.device, help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, mps"
    )
    group.add_argument(
        "--threads", type=int, default=DEFAULTS.threads, help="CPU threads for torch (0: torch's default)"
    )
    group.add_argument("--dry-run", action="store_true", help=f"{DRY_RUN_BATCHES} batches per epoch, 1 epoch")
    group.add_argument("--run-name", help="MLflow run name (default: train, dry-run or retrain)")
    group.add_argument("--hypothesis", default="", help="one line: what this run is expected to show (run tag)")
    group.add_argument("--experiment-batch", default="", help="tag: the `make experiments` batch this run belongs to")
    group.add_argument("--no-track", action="store_true", help="do not record the run in MLflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train the MNIST CNN, fine-tune it on user feedback, or promote/roll back the production model.",
        formatter_class=DefaultsHelpFormatter,
    )
    for add in (add_architecture, add_not_digit, add_retrain, add_production, add_run):
        add(parser)
    return parser


def to_recipe(args: argparse.Namespace, argv: list[str] | None = None) -> Recipe:
    """The parsed flags as a Recipe (the flags that choose an action, like --promote, stay on `args`)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe) if hasattr(args, f.name)}
    command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
    return Recipe(**values, track=not args.no_track, command=command)
