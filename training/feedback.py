"""The feedback a retrain learns from: the labelled rows of the app's database, counted, snapshotted to
`data/feedback/<UTC time>/` (one PNG per row and a manifest of ids, labels and sha256, so a run can be repeated),
and split into the rows to learn from and a seeded 20 % held out.

    python -c "from training.feedback import prepare; from training.recipe import Recipe; print(prepare(Recipe()))"
"""

from __future__ import annotations

import dataclasses
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

from inference.labels import NOT_DIGIT
from inference.preprocess import IMAGE_SIZE
from config.settings import settings
from storage.config import describe
from storage.database import Database
from storage.pool import DatabaseUnavailable
from storage.trust import Trust
from training.dataset import Split
from training.recipe import Recipe

HOLDOUT_FRACTION = 0.2  # of the labelled rows, held out to measure what the fine-tune learnt


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

    return dataclasses.replace(feedback, train=digits(feedback.train), holdout=digits(feedback.holdout))


def prepare(recipe: Recipe) -> Feedback | None:
    """Count, then snapshot the labelled rows; None (with the reason printed) when retraining must not start."""
    database = Database()
    try:
        available = database.count_labelled()
    except DatabaseUnavailable as exc:
        print(f"retrain refused: the database is unreachable ({exc}). Nothing was written.")
        return None
    if available < recipe.min_feedback:
        print(
            f"retrain refused: {available} labelled predictions in the database, at least {recipe.min_feedback} are "
            "needed (give feedback on the page, or lower --min-feedback). Nothing was written."
        )
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(recipe.snapshot_dir) / stamp
    partial = folder.with_name(stamp + ".partial")  # renamed when complete: a half snapshot never looks whole
    try:
        rows, pixels, skipped, held = snapshot_rows(database, partial)
    except DatabaseUnavailable as exc:
        shutil.rmtree(partial, ignore_errors=True)
        print(f"retrain refused: the database went away while reading ({exc}). Nothing was written.")
        return None
    finally:
        database.close()
    if len(rows) < recipe.min_feedback:
        shutil.rmtree(partial, ignore_errors=True)
        print(f"retrain refused: only {len(rows)} labelled rows have a readable image. Nothing was written.")
        return None
    labellers = len({row["labeller"] for row in rows})
    print(
        f"feedback: {len(rows)} labelled rows from {labellers} labellers (at most {settings().max_labels_per_client} "
        f"each); {len(held)} held for review (they contradict an answer given with ≥ "
        f"{settings().label_hold_confidence:.0%} confidence and fewer than {settings().label_corroboration} labellers "
        "made that correction)"
    )
    header = {"created_at": stamp, "database": describe(database.dsn), "seed": recipe.seed, "held_for_review": held}
    return split_and_seal(rows, pixels, partial, folder, {**header, "skipped_unreadable": skipped})


def snapshot_rows(database: Database, partial: Path) -> tuple[list[dict[str, Any]], list[np.ndarray], int, list[int]]:
    """The labelled rows a retrain may trust, each with a readable image written to `partial`/images/: the
    manifest's rows, the pixels, how many were skipped as unreadable, and the ids held for the operator's review.
    No labeller gives more than MAX_LABELS_PER_CLIENT (their newest), so one visitor cannot flood the set; a label
    that contradicts an answer given with LABEL_HOLD_CONFIDENCE is held, not trained on, unless LABEL_CORROBORATION
    labellers made the same correction or the operator accepted it (storage/trust.py)."""
    (partial / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    pixels: list[np.ndarray] = []
    skipped, held = 0, []
    for row in database.iter_labelled(trust=Trust.from_settings()):
        if row["held"]:
            held.append(row["id"])
            continue
        image = decode(row["image"])
        if image is None:
            skipped += 1
            continue
        name = f"images/{row['id']}.png" if not row.get("part") else f"images/{row['id']}-{row['part']}.png"
        (partial / name).write_bytes(row["image"])
        rows.append(
            {
                "id": row["id"],
                "part": row.get("part", 0),  # a number's digit: 1, 2, ... (0: the row's own image)
                "label": NOT_DIGIT if row.get("not_digit") else row["true_label"],
                "predicted": row["predicted_digit"],
                "model_version": row["model_version"],
                "created_at": row["created_at"].isoformat(),
                "file": name,
                "sha256": hashlib.sha256(row["image"]).hexdigest(),
                "labeller": hashlib.sha256(row["labeller"].encode()).hexdigest()[:12],  # counted, not named
            }
        )
        pixels.append(image)
    return rows, pixels, skipped, held


def split_and_seal(
    rows: list[dict[str, Any]], pixels: list[np.ndarray], partial: Path, folder: Path, header: dict[str, Any]
) -> Feedback:
    """Hold out a seeded share of the rows, write the manifest, and rename the snapshot complete."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(int(header["seed"]))).tolist()
    n_holdout = max(1, round(HOLDOUT_FRACTION * len(rows)))
    holdout_idx, train_idx = sorted(order[:n_holdout]), sorted(order[n_holdout:])
    for i in holdout_idx:
        rows[i]["split"] = "holdout"
    for i in train_idx:
        rows[i]["split"] = "train"
    manifest = {**header, "holdout_fraction": HOLDOUT_FRACTION, "rows": rows}
    text = json.dumps(manifest, indent=1) + "\n"
    (partial / "manifest.json").write_text(text)
    partial.rename(folder)
    labels = [int(r["label"]) for r in rows]
    print(
        f"feedback: {len(rows)} labelled rows snapshotted to {folder} ({len(train_idx)} to learn from, "
        f"{len(holdout_idx)} held out; {header['skipped_unreadable']} unreadable skipped)"
    )
    return Feedback(
        folder=folder,
        train=to_split([pixels[i] for i in train_idx], [labels[i] for i in train_idx]),
        holdout=to_split([pixels[i] for i in holdout_idx], [labels[i] for i in holdout_idx]),
        manifest_sha256=hashlib.sha256(text.encode()).hexdigest(),
        rows=len(rows),
    )
