"""Retraining from user feedback: the labelled predictions in the app's database fine-tune the production model.

    make retrain        # = python train.py --retrain (DATABASE_URL etc. as for the app; MNIST_DIR offline)

1. Reads every labelled prediction (the 28x28 image the model saw and the user's answer) from the database the app
   logs to, streamed (db.Database.iter_labelled); refuses below `--min-feedback` rows or with no database.
2. Snapshots what it read to `data/feedback/<UTC time>/` (one PNG per row and a manifest of row ids, labels and
   sha256), so the run can be repeated, and holds out a seeded 20 % of the rows.
3. Fine-tunes the production model on MNIST with the other 80 % mixed into every batch (oversampled, augmented like
   MNIST), evaluates on the official test set and on the held-out feedback before and after, and writes
   `models/candidate.pth` + `models/candidate.json`, a tracked run and a registered version. `models/model.pth` is
   never touched: shipping the candidate is the gated `make promote VERSION=N`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import db
import train
from dataset import Split, load_mnist, split_validation
from registry import Run
import utils
from utils import IMAGE_SIZE, NOT_DIGIT, load_checkpoint

HOLDOUT_FRACTION = 0.2


@dataclass
class Feedback:
    """A snapshot of the labelled rows: where it is, the rows to learn from and the rows held out."""

    folder: Path
    train: Split
    holdout: Split
    manifest_sha256: str
    rows: int


def decode(png: bytes) -> np.ndarray | None:
    """A stored model input (28x28 greyscale PNG) as uint8 pixels, or None if the bytes are not one."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            pixels = np.asarray(image.convert("L"))
    except Exception:  # a row whose image cannot be read is skipped, not fatal
        return None
    return pixels if pixels.shape == (IMAGE_SIZE, IMAGE_SIZE) else None


def to_split(pixels: list[np.ndarray], labels: list[int]) -> Split:
    images = (
        torch.from_numpy(np.stack(pixels)).float().div_(255.0).unsqueeze(1) if pixels else torch.zeros(0, 1, 28, 28)
    )
    return Split(images, torch.tensor(labels, dtype=torch.long))


def drop_not_digit(feedback: Feedback) -> Feedback:
    """The feedback without its "Not a digit" rows (for a base model that has no such class)."""

    def digits(split: Split) -> Split:
        keep = split.labels < NOT_DIGIT
        return Split(split.images[keep], split.labels[keep])

    return Feedback(feedback.folder, digits(feedback.train), digits(feedback.holdout), feedback.manifest_sha256,
                    feedback.rows)  # fmt: skip


def prepare(args: argparse.Namespace) -> Feedback | None:
    """Count, then snapshot the labelled rows; None (with the reason printed) when retraining must not start."""
    database = db.Database()
    try:
        available = database.count_labelled()
    except db.DatabaseUnavailable as exc:
        print(f"retrain refused: the database is unreachable ({exc}). Nothing was written.")
        return None
    if available < args.min_feedback:
        print(
            f"retrain refused: {available} labelled predictions in the database, at least {args.min_feedback} are "
            "needed (give feedback on the page, or lower --min-feedback). Nothing was written."
        )
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(args.snapshot_dir) / stamp
    partial = folder.with_name(stamp + ".partial")  # renamed when complete: a half snapshot never looks whole
    (partial / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    pixels: list[np.ndarray] = []
    skipped = 0
    try:
        for row in database.iter_labelled():
            image = decode(row["image"])
            if image is None:
                skipped += 1
                continue
            name = f"images/{row['id']}.png"
            (partial / name).write_bytes(row["image"])
            rows.append(
                {
                    "id": row["id"],
                    "label": NOT_DIGIT if row.get("not_digit") else row["true_label"],  # 10: "Not a digit"
                    "predicted": row["predicted_digit"],
                    "model_version": row["model_version"],
                    "created_at": row["created_at"].isoformat(),
                    "file": name,
                    "sha256": hashlib.sha256(row["image"]).hexdigest(),
                }
            )
            pixels.append(image)
    except db.DatabaseUnavailable as exc:
        shutil.rmtree(partial, ignore_errors=True)
        print(f"retrain refused: the database went away while reading ({exc}). Nothing was written.")
        return None
    finally:
        database.close()
    if len(rows) < args.min_feedback:
        shutil.rmtree(partial, ignore_errors=True)
        print(f"retrain refused: only {len(rows)} labelled rows have a readable image. Nothing was written.")
        return None

    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed)).tolist()
    n_holdout = max(1, round(HOLDOUT_FRACTION * len(rows)))
    holdout_idx, train_idx = sorted(order[:n_holdout]), sorted(order[n_holdout:])
    for i in holdout_idx:
        rows[i]["split"] = "holdout"
    for i in train_idx:
        rows[i]["split"] = "train"
    manifest = {
        "created_at": stamp,
        "database": db.describe(database.dsn),
        "seed": args.seed,
        "holdout_fraction": HOLDOUT_FRACTION,
        "skipped_unreadable": skipped,
        "rows": rows,
    }
    text = json.dumps(manifest, indent=1) + "\n"
    (partial / "manifest.json").write_text(text)
    partial.rename(folder)
    labels = [int(r["label"]) for r in rows]
    print(
        f"feedback: {len(rows)} labelled rows snapshotted to {folder} ({len(train_idx)} to learn from, "
        f"{len(holdout_idx)} held out; {skipped} unreadable skipped)"
    )
    return Feedback(
        folder=folder,
        train=to_split([pixels[i] for i in train_idx], [labels[i] for i in train_idx]),
        holdout=to_split([pixels[i] for i in holdout_idx], [labels[i] for i in holdout_idx]),
        manifest_sha256=hashlib.sha256(text.encode()).hexdigest(),
        rows=len(rows),
    )


def fine_tune(args: argparse.Namespace, device: torch.device, run: Run, feedback: Feedback) -> int:
    """Fine-tune the base (production) model on MNIST + the feedback rows; write and register the candidate."""
    torch.manual_seed(args.seed)
    base = load_checkpoint(args.base)
    # Fine-tune the way the base was trained (its label smoothing and weight EMA): the EMA starts at the base's
    # weights and keeps the candidate near them, which is what holds the official accuracy while it learns the
    # feedback (a continental "1" drill: 99.54 % official without, 99.70 % with; both read the new style 100 %).
    base_recipe = base.meta.get("recipe", {})
    if args.label_smoothing is None:
        args.label_smoothing = float(base_recipe.get("label_smoothing") or 0.0)
    if args.ema is None:
        args.ema = float(base_recipe.get("ema") or 0.0)
    model = base.model.to(memory_format=torch.contiguous_format).to(device)
    knows_not_digit = utils.knows_not_digit(base.model)
    if not knows_not_digit:  # a 10-class base cannot learn "Not a digit" answers: fine-tune on the digits only
        feedback = drop_not_digit(feedback)
    before = train.evaluate(model, feedback.holdout, device=device)["accuracy"]
    model.set_calibration(temperature=1.0)  # trained on raw logits; record_run fits the candidate's own temperature
    full_train, test_split, digests = load_mnist(args.data_dir)
    train_split, val_split = split_validation(full_train, train.VALIDATION_SIZE, args.seed)
    not_digit_val = None
    if knows_not_digit:  # keep the drawn non-digits in every epoch, or the 11th class is forgotten
        train_split, val_negatives = train.with_negatives(train_split, val_split, args)
        not_digit_val = (val_split, val_negatives)
    print(
        f"fine-tuning {args.base} (version {base.version}) on {len(train_split)} MNIST images + "
        f"{len(feedback.train)} feedback rows ({args.feedback_per_batch} per batch); device {device}"
    )
    run.set_tags({"data_sha256": train.data_hash({**digests, "feedback": feedback.manifest_sha256})})
    run.log_params({**vars(args), "feedback_rows": feedback.rows, "base_version": base.version})
    epochs = 1 if args.dry_run else args.finetune_epochs
    validation = train.with_others(val_split, not_digit_val[1] if not_digit_val else None)
    result = train.fit(
        model, train_split, validation, args, device, run, epochs, args.finetune_lr, feedback.train, keep_last=True
    )
    after = train.evaluate(result.model, feedback.holdout)["accuracy"]
    run.log_metrics({"feedback_holdout_before": before, "feedback_holdout_after": after})
    out: Path = args.out or train.CANDIDATE_PATH
    meta = train.record_run(
        result,
        test_split,
        args,
        run,
        out,
        feedback.folder,
        {
            "data_sha256": digests,
            "base_version": base.version,
            "base_model_version": base.meta.get("model_version"),
            "feedback_snapshot": str(feedback.folder),
            "feedback_manifest_sha256": feedback.manifest_sha256,
        },
        not_digit_val,
    )
    summary = {
        "official_test_accuracy": meta["test_accuracy"],
        "feedback_holdout_before": before,
        "feedback_holdout_after": after,
        "feedback_rows": feedback.rows,
        "holdout_rows": len(feedback.holdout),
        "run_id": meta["run_id"],
        "version": meta["model_version"],
        "base_version": base.version,
        "base_model_version": base.meta.get("model_version"),
        "checkpoint": str(out),
        "snapshot": str(feedback.folder),
        "dry_run": args.dry_run,
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
    return 0
