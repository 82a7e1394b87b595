"""Promotion and rollback of the production model, `models/model.pth`, behind a gate.

    make promote VERSION=7     # = python train.py --promote 7
    make rollback              # = python train.py --rollback

The gate evaluates the registered version on the official MNIST test set, on the project's drawn-digit check
(2,000 test digits re-drawn as canvas strokes, read through the app's preprocessing; a digit called "not a digit"
counts as wrong) and, for a model with the "not a digit" class, on the held-out non-digits (calibration.py), and the
current production model the same way. It refuses, with a non-zero exit and `models/model.pth` untouched, unless
the candidate passes the recipe's `Gate` (training.recipe): it reaches `min_official` (and `min_flagged`), neither
digit figure falls more than `max_drop` below production's, and it flags non-digits no less than `max_flagged_drop`
below production (or at all, if production does). A retrained candidate whose feedback held out drawings users
labelled "Not a digit" (at least MIN_LABELLED) must flag `min_labelled_flagged` of them: it learnt what they taught.
On success the file is replaced atomically, the registry's alias
`production` moves to the version and `previous` to the one before; the model it replaced is kept as
`models/previous.pth` (git-ignored) and described in `models/production.json`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.evaluation import calibration
from training.synthetic import drawn
from training.lifecycle import registry
from training.dataset import Split, load_mnist
from training.synthetic.negatives import make_negatives
from training.feedback import decode
from training.loop import evaluate
from training.evaluation.plots import plot_confusion
from training.recipe import RECIPE, Gate
from config.paths import PROJECT_DIR
from config.settings import settings
from inference.labels import NOT_DIGIT
from inference.network import Checkpoint, ModelLoadError, knows_not_digit, load_checkpoint

MIN_LABELLED = 5  # fewer held-out "not a digit" labels say too little to gate on


class Paths:
    """The production model (`MODEL_PATH`, as for the app; default models/model.pth) and the files beside it."""

    def __init__(self) -> None:
        self.model = settings().model_path
        self.dir = self.model.parent
        self.previous = self.dir / "previous.pth"
        self.record = self.dir / "production.json"


def gate_figures(
    checkpoint: Checkpoint, test: Split, heldout: torch.Tensor, labelled: torch.Tensor | None = None
) -> dict[str, Any]:
    """Official test accuracy, the drawn-digit check, and the shares of `heldout` non-digits and of the non-digits
    users `labelled` (None without them) flagged (None for a model without the class)."""
    report = evaluate(checkpoint.model, test)
    flagged = labelled_flagged = None
    if knows_not_digit(checkpoint.model):
        flagged = flagged_share(checkpoint, heldout)
        labelled_flagged = flagged_share(checkpoint, labelled) if labelled is not None else None
    return {
        "official": report["accuracy"],
        "drawn": drawn.drawn_digit_accuracy(checkpoint.model, test.images, test.labels),
        "flagged": flagged,
        "labelled_flagged": labelled_flagged,
        "report": report,
    }


def judge(
    candidate: Checkpoint, production: Checkpoint | None, data_dir: str | None, name: str = "candidate"
) -> tuple[dict[str, Any], list[str]]:
    """The gate's figures for `candidate` beside production's, printed as a table, and why it may not be promoted
    (an empty list: it may). `make promote` and the drills judge by this."""
    _, test, _ = load_mnist(data_dir)
    heldout, _ = make_negatives(calibration.HELDOUT_NEGATIVES, "heldout", test.images, calibration.HELDOUT_SEED)
    labelled = labelled_not_digits(candidate)
    figures = gate_figures(candidate, test, heldout, labelled)
    current = gate_figures(production, test, heldout, labelled) if production else None
    print(f"{'':22}{'official test':>15}{'drawn check':>13}{'non-digits flagged':>20}")
    for label, row in ((name, figures), ("production", current)):
        if row is not None:
            shown = "-" if row["flagged"] is None else f"{row['flagged']:.2%}"
            print(f"{label:22}{row['official']:>15.2%}{row['drawn']:>13.2%}{shown:>20}")
            if row["labelled_flagged"] is not None:
                users = f"users' non-digits (held out, {0 if labelled is None else len(labelled)})"
                print(f"{'':22}{users} flagged {row['labelled_flagged']:.1%}")
    return figures, gate(figures, current, dry_run=bool(candidate.meta.get("dry_run")))


def flagged_share(checkpoint: Checkpoint, images: torch.Tensor) -> float:
    _, scores = calibration.scores(checkpoint.model, images)
    return float((scores >= checkpoint.model.reject_threshold).mean())


def labelled_not_digits(candidate: Checkpoint) -> torch.Tensor | None:
    """The drawings users labelled "Not a digit" that the candidate's retrain held out (its feedback snapshot's
    hold-out), as (N, 1, 28, 28) in [0, 1]; None when it has fewer than MIN_LABELLED or its snapshot is not here."""
    folder = candidate.meta.get("feedback_snapshot")
    manifest = PROJECT_DIR / str(folder) / "manifest.json" if folder else None
    if manifest is None or not manifest.is_file():
        return None
    rows = json.loads(manifest.read_text())["rows"]
    files = [manifest.parent / r["file"] for r in rows if r.get("split") == "holdout" and r["label"] == NOT_DIGIT]
    pixels = [p for p in (decode(f.read_bytes()) for f in files if f.is_file()) if p is not None]
    if len(pixels) < MIN_LABELLED:
        return None
    return torch.from_numpy(np.stack(pixels)).float().div_(255.0).unsqueeze(1)


def gate(
    candidate: dict[str, Any], production: dict[str, Any] | None, dry_run: bool = False, bars: Gate = RECIPE.gate
) -> list[str]:
    """Why the candidate may not be promoted (an empty list: it may), by the recipe's gate `bars`."""
    reasons = (
        ["it was trained by a dry run (a smoke test of a few batches, never a production model)"] if dry_run else []
    )
    if candidate["official"] < bars.min_official:
        reasons.append(f"official test {candidate['official']:.2%} is below the {bars.min_official:.1%} bar")
    flagged, production_flagged = candidate.get("flagged"), (production or {}).get("flagged")
    if flagged is not None and flagged < bars.min_flagged:
        reasons.append(f"it flags {flagged:.2%} of the held-out non-digits, below the {bars.min_flagged:.0%} bar")
    labelled = candidate.get("labelled_flagged")
    if labelled is not None and labelled < bars.min_labelled_flagged:
        reasons.append(
            f'it flags {labelled:.1%} of the held-out drawings users labelled "not a digit", below the '
            f"{bars.min_labelled_flagged:.0%} bar: it has not learnt what they taught"
        )
    if production is not None:
        for key, name in (("official", "official test"), ("drawn", "drawn-digit check")):
            if candidate[key] < production[key] - bars.max_drop:
                reasons.append(
                    f"{name} {candidate[key]:.2%} is more than {bars.max_drop * 100:.1f} points below production's "
                    f"{production[key]:.2%}"
                )
        if production_flagged is not None and flagged is None:
            reasons.append('it cannot say "not a digit", which production can')
        elif (
            production_flagged is not None
            and flagged is not None
            and flagged < production_flagged - bars.max_flagged_drop
        ):
            reasons.append(
                f"it flags {flagged:.2%} of the held-out non-digits, more than {bars.max_flagged_drop * 100:.0f} point "
                f"below production's {production_flagged:.2%}"
            )
    return reasons


def atomic_copy(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source` at once: a reader (the app, a deploy) never sees half a file."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, tmp)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.chmod(tmp.name, 0o644)  # a temporary file is private (0600); the image's non-root user must read the model
    os.replace(tmp.name, target)


def describe(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(checkpoint.path.read_bytes()).hexdigest(),
        "file_version": checkpoint.version,
        "model_version": checkpoint.meta.get("model_version"),
        "run_id": checkpoint.meta.get("run_id"),
        "trained_at": checkpoint.meta.get("trained_at"),  # what make loop counts new labels from (no torch needed)
    }


def read_record(paths: Paths) -> dict[str, Any]:
    try:
        return dict(json.loads(paths.record.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_record(paths: Paths, record: dict[str, Any]) -> None:
    tmp = paths.record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, paths.record)


def promote(version: str, data_dir: str | None) -> int:
    """Gate registered `version` against production; ship it only if it passes. Exit code 0, or 1 when refused."""
    paths = Paths()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path, facts = registry.download_version(version, Path(tmp))
            candidate = load_checkpoint(path)
        except (registry.RegistryError, ModelLoadError) as exc:
            print(f"promotion refused: {exc}\n{paths.model} is unchanged.")
            return 1
        production = load_checkpoint(paths.model) if paths.model.is_file() else None
        print(f"gate: version {version} against production ({paths.model}) ...")
        figures, reasons = judge(candidate, production, data_dir, f"candidate v{version}")
        if reasons:
            print("promotion refused: " + "; ".join(reasons) + f".\n{paths.model} is unchanged.")
            return 1
        previous_version = registry.alias_version(registry.PRODUCTION_ALIAS)
        shipped_facts = describe(candidate)  # read before the move: the files are byte-identical after it
        replaced_facts = {**describe(production), "registry_version": previous_version} if production else None
        if production is not None:
            atomic_copy(paths.model, paths.previous)
        atomic_copy(path, paths.model)
        for report in facts["reports"].glob("*"):  # the run's curves and metrics describe the shipped model now
            shutil.copyfile(report, paths.dir / report.name)
    write_evaluation(paths, figures["report"])
    registry.set_alias(registry.PRODUCTION_ALIAS, version)
    registry.set_alias(registry.PREVIOUS_ALIAS, previous_version)
    write_record(
        paths,
        {
            **shipped_facts,
            "registry_version": str(version),
            "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "gate": {"official": figures["official"], "drawn": figures["drawn"], "flagged": figures["flagged"]},
            "previous": replaced_facts,
        },
    )
    print(f"promoted version {version}: {paths.model} is now {candidate.version}; the model it replaced is kept in")
    print(f"{paths.previous} (make rollback). Commit models/ to deploy it (DEPLOYMENT.md).")
    return 0


def write_evaluation(paths: Paths, report: dict[str, Any]) -> None:
    (paths.dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_confusion(report["confusion"], report["accuracy"], paths.dir / "confusion_matrix.png")


def rollback() -> int:
    """Swap production with the model it replaced (so a second rollback undoes the first)."""
    paths = Paths()
    record = read_record(paths)
    previous = record.get("previous") or {}
    with tempfile.TemporaryDirectory() as tmp:
        source = paths.previous
        if not source.is_file() and previous.get("registry_version"):
            try:
                source, _ = registry.download_version(previous["registry_version"], Path(tmp))
            except registry.RegistryError as exc:
                print(f"rollback refused: {exc}\n{paths.model} is unchanged.")
                return 1
        if not source.is_file():
            print(
                f"rollback refused: no previous production model (no {paths.previous} and no registered version "
                f"in {paths.record}). {paths.model} is unchanged; `git log models/model.pth` lists the shipped ones."
            )
            return 1
        try:
            restored = load_checkpoint(source)
        except ModelLoadError as exc:
            print(f"rollback refused: {exc}\n{paths.model} is unchanged.")
            return 1
        current = load_checkpoint(paths.model) if paths.model.is_file() else None
        current_facts = {**describe(current), "registry_version": record.get("registry_version")} if current else None
        restored_facts = describe(restored)
        backup = Path(tmp) / "current.pth"
        if current is not None:
            shutil.copyfile(paths.model, backup)
        atomic_copy(source, paths.model)
        if current is not None:
            atomic_copy(backup, paths.previous)
    registry.set_alias(registry.PRODUCTION_ALIAS, previous.get("registry_version"))
    registry.set_alias(registry.PREVIOUS_ALIAS, current_facts["registry_version"] if current_facts else None)
    write_record(
        paths,
        {
            **restored_facts,
            "registry_version": previous.get("registry_version"),
            "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rolled_back": True,
            "previous": current_facts,
        },
    )
    print(f"rolled back: {paths.model} is now {restored.version} again; the one it replaced is in {paths.previous}")
    print("(models/evaluation.json and the plots still describe the replaced model: `make evaluate` refreshes them)")
    return 0
