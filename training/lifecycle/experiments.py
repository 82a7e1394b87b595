"""Tracked experiments: each a variant of today's recipe (`make train`'s, training.recipe), trained as an MLflow
run; then the comparison is written into the model card.

    make experiments        # = python -m training.lifecycle.experiments: every variant, the report
    python -m training.lifecycle.experiments --report  # the report alone, from the tracking store
    python -m training.lifecycle.experiments --dry-run    # every variant for a few batches (tests)
    python -m training.lifecycle.experiments --only no-ema --batch 20261205T175556Z  # add one to a batch

A variant is the recipe with a few fields changed (`dataclasses.replace`), so the reference run is exactly what
`make train` trains and each other run differs from it by what its name says. Each run stores its one-line
hypothesis (tag `hypothesis`) and the batch it belongs to (tag `experiment_batch`). The winner is the run with the
best validation score: the official test set is reported, never used to choose. Budget: about 8 minutes a run on
2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from config.paths import MODELS_DIR
from training.loop import selection_key
from training.options import DefaultsHelpFormatter, build_parser, to_recipe
from training.evaluation.plots import plot_experiments
from training.recipe import RUNS_DIR, Recipe
from training.lifecycle.registry import mlflow_installed, tracking_uri
from training import scratch

MODEL_CARD = MODELS_DIR / "README.md"
COMPARISON_PLOT = MODELS_DIR / "experiments.png"
START, END = "<!-- experiments:start -->", "<!-- experiments:end -->"


@dataclass(frozen=True)
class Experiment:
    """A variant of the recipe: its name, the one-line hypothesis it tests, and the fields it changes."""

    name: str
    hypothesis: str
    changes: dict[str, Any] = field(default_factory=dict)

    def recipe(self, base: Recipe) -> Recipe:
        return dataclasses.replace(base, **self.changes)


EXPERIMENTS = (
    Experiment("recipe", "Today's recipe as `make train` runs it: the reference every variant is read against."),
    Experiment(
        "more-canvas-digits",
        "Twice the canvas-drawn digits beside the non-digits (12,000) read drawn digits better without refusing less.",
        {"canvas_digits": 12_000},
    ),
    Experiment(
        "longer-digit-stage",
        "Stage 1 for 14 epochs instead of 8: validation accuracy was still rising at its last epoch.",
        {"digit_epochs": 14},
    ),
    Experiment(
        "no-ema",
        "Without the EMA of the weights the kept epoch is noisier: a few hundredths of a point lower.",
        {"ema": 0.0},
    ),
)


def run_all(dry_run: bool, extra: list[str], only: list[str] | None = None, batch: str | None = None) -> str:
    """Train every variant (or those named in `only`) as one batch of tracked runs; returns the batch's id. `extra`:
    train.py flags applied to the base recipe of every variant (e.g. --data-dir)."""
    batch = batch or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ("-dry-run" if dry_run else "")
    argv = [*extra, *(["--dry-run"] if dry_run else [])]
    base = to_recipe(build_parser().parse_args(argv))
    for experiment in EXPERIMENTS:
        if only and experiment.name not in only:
            continue
        print(f"\n=== {experiment.name}: {experiment.hypothesis}")
        out = RUNS_DIR / f"{batch}-{experiment.name}" / "model.pth"
        command = shlex.join(["python", "-m", "training.lifecycle.experiments", "--only", experiment.name, *argv])
        recipe = dataclasses.replace(
            experiment.recipe(base),
            out=out,
            command=command,
            run_name=experiment.name,
            hypothesis=experiment.hypothesis,
            experiment_batch=batch,
        )
        code = scratch.run(recipe)
        if code != 0:
            raise SystemExit(f"{experiment.name} failed (exit {code})")
    return batch


def batch_runs(client: Any, batch: str | None) -> tuple[str, list[Any]]:
    """The finished runs of one experiment batch (the newest when `batch` is None), in the order they ran."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.experiment_batch != '' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    batches = sorted(
        {r.data.tags["experiment_batch"] for r in runs if "dry-run" not in r.data.tags["experiment_batch"]}
    )
    chosen = batch or (batches[-1] if batches else None)
    if chosen is None:
        raise SystemExit(f"no finished experiment runs in {tracking_uri()}: run `make experiments` first")
    return chosen, [r for r in runs if r.data.tags["experiment_batch"] == chosen]


def report(batch: str | None = None) -> str:
    """The comparison table and curves, generated from the tracking store, written into the model card."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri())
    chosen, runs = batch_runs(client, batch)
    curves = {
        r.info.run_name: {
            key: client_metric(client, r.info.run_id, key)
            for key in ("train_loss", "val_accuracy", "val_score", "val_loss", "seconds")
        }
        for r in runs
    }
    plot_experiments(curves, COMPARISON_PLOT)
    # The rule training.loop.fit keeps an epoch by (selection_key), applied to each run's kept epoch.
    kept = {r.info.run_id: kept_epoch(curves[r.info.run_name]) for r in runs}
    best_val = {run_id: accuracy for run_id, (accuracy, _) in kept.items()}
    winner = max(runs, key=lambda r: kept[r.info.run_id])
    rows = [
        "| run | hypothesis | recipe | best val | official test | minutes | version |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        p, m = r.data.params, r.data.metrics
        recipe = (
            f"{p.get('epochs')} ep, ch {p.get('channels')}, hidden {p.get('hidden')}, "
            f"EMA {p.get('ema')}, smoothing {p.get('label_smoothing')}, {int(p.get('parameters', 0)):,} params"
        )
        minutes = sum(v for _, v in curves[r.info.run_name]["seconds"]) / 60
        name = f"**{r.info.run_name}**" if r is winner else r.info.run_name
        rows.append(
            f"| {name} | {r.data.tags.get('hypothesis', '')} | {recipe} | {best_val[r.info.run_id]:.2%} | "
            f"{m.get('test_accuracy', float('nan')):.2%} | {minutes:.1f} | {r.data.tags.get('model_version', '?')} |"
        )
    text = "\n".join(
        [
            START,
            f"Batch `{chosen}` (`make experiments`; generated from the tracking store by "
            f"`python -m training.lifecycle.experiments --report`, not typed by hand). Winner by validation accuracy, "
            f"ties "
            f"broken by the lower validation "
            f"loss (the rule training keeps an epoch by; the test set chooses nothing): **{winner.info.run_name}** "
            f"(version {winner.data.tags.get('model_version', '?')}).",
            "",
            *rows,
            "",
            "![validation accuracy and training loss per epoch, one line per run](experiments.png)",
            END,
        ]
    )
    card = MODEL_CARD.read_text()
    if START in card:
        card = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: text, card, flags=re.S)
    else:
        card = card.rstrip() + "\n\n## Experiments\n\n" + text + "\n"
    MODEL_CARD.write_text(card)
    print(text)
    return str(winner.data.tags.get("model_version", ""))


def kept_epoch(metrics: dict[str, list[tuple[int, float]]]) -> tuple[float, float]:
    """selection_key of the epoch a run kept: the larger one wins."""
    loss = dict(metrics.get("val_loss", []))
    scores = metrics.get("val_score") or metrics.get("val_accuracy", [])  # runs from before val_score: digits only
    keys = (selection_key(acc, loss.get(step, 0.0)) for step, acc in scores)
    return max(keys, default=(0.0, 0.0))


def client_metric(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only regenerate the report from the store")
    parser.add_argument("--batch", help="report this batch, or add --only runs to it (default: the newest / a new one)")
    parser.add_argument("--only", nargs="+", choices=[e.name for e in EXPERIMENTS], help="run only these")
    parser.add_argument("--dry-run", action="store_true", help="a few batches per configuration, no report")
    args, extra = parser.parse_known_args(argv)
    if not mlflow_installed():
        print("mlflow is not installed (pip install -r requirements-dev.txt): experiments need the tracking store")
        return 2
    if args.report:
        report(args.batch)
        return 0
    batch = run_all(args.dry_run, extra, args.only, args.batch)
    if not args.dry_run:
        version = report(batch)
        print(f"\nship the winner through the gate: make promote VERSION={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
