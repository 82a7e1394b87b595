"""A model's life after training: tracked runs in a real MLflow store (SQLite in a temp dir), the registry, the
promotion gate and rollback, and retraining from feedback stored in a real PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import pytest
import torch

from config.paths import PROJECT_DIR
import db
from training.synthetic import drawn
from training.synthetic import negatives
from training.lifecycle import experiments, promotion
from training.lifecycle import registry
from training.recipe import RECIPE
import utils

pytestmark = pytest.mark.slow  # trains dry runs in subprocesses and promotes them: tens of seconds each

ROOT = PROJECT_DIR


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty tracking store for this test (what a new team member or CI starts from)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped model standing in as production (MODEL_PATH), so a promotion never touches the repo."""
    path = tmp_path / "models" / "model.pth"
    path.parent.mkdir()
    path.write_bytes(utils.DEFAULT_MODEL_PATH.read_bytes())
    monkeypatch.setenv("MODEL_PATH", str(path))
    return path


def train_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# ----------------------------------------------------------------------------------------------------------------
# Tracking and registry


def test_dry_run_is_one_tracked_run_and_registers_a_version(store: str, tmp_path: Path, mnist_test_split) -> None:
    out = tmp_path / "run" / "model.pth"
    result = train_py("--dry-run", "--out", str(out), "--hypothesis", "smoke test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "device: cpu" in result.stdout

    meta = utils.load_checkpoint(out).meta
    assert meta["registered_model"] == registry.REGISTERED_MODEL and meta["model_version"] == "1"
    run = client(store).get_run(meta["run_id"])
    assert run.info.status == "FINISHED"
    for param in ("epochs", "batch_size", "lr", "weight_decay", "seed", "channels", "ema", "label_smoothing"):
        assert param in run.data.params, param
    assert {"train_loss", "val_accuracy", "test_accuracy"} <= set(run.data.metrics)
    history = client(store).get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2], "stage 1 (digits), then stage 2 (not a digit) follows on"
    tags = run.data.tags
    assert tags["hypothesis"] == "smoke test" and tags["mode"] == "dry-run" and tags["model_version"] == "1"
    assert len(tags["data_sha256"]) == 64 and tags["git_commit"]
    artifacts = {a.path for a in client(store).list_artifacts(run.info.run_id)}
    assert {"checkpoint", "metrics.json", "training_curves.png", "confusion_matrix.png"} <= artifacts
    version = client(store).get_model_version(registry.REGISTERED_MODEL, "1")
    assert version.run_id == run.info.run_id and version.source.endswith("/checkpoint")


def test_experiments_train_variants_of_the_recipe_as_one_tracked_batch(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_test_split
) -> None:
    """`make experiments --dry-run` for two variants: each a tracked run of the batch, with its hypothesis, and
    the variant's change in the checkpoint's recipe (nothing else differs from make train's)."""
    monkeypatch.setattr(experiments, "RUNS_DIR", tmp_path)
    assert experiments.main(["--dry-run", "--only", "recipe", "no-ema"]) == 0
    runs = {}
    for path in sorted(tmp_path.glob("*/model.pth")):
        meta = utils.load_checkpoint(path).meta
        runs[meta["recipe"]["run_name"]] = meta["recipe"]
        tags = client(store).get_run(meta["run_id"]).data.tags
        assert tags["experiment_batch"].endswith("-dry-run") and tags["hypothesis"]
    assert set(runs) == {"recipe", "no-ema"}
    assert runs["no-ema"]["ema"] == 0.0 and runs["recipe"]["ema"] == 0.999
    differing = {k for k in runs["recipe"] if runs["recipe"][k] != runs["no-ema"][k]}
    assert differing == {"ema", "run_name", "hypothesis", "command"}, differing


def test_promoting_a_dry_run_version_is_refused_and_changes_nothing(
    store: str, tmp_path: Path, production: Path, mnist_test_split
) -> None:
    assert train_py("--dry-run", "--out", str(tmp_path / "run" / "model.pth")).returncode == 0
    before = production.read_bytes()
    shipped = utils.DEFAULT_MODEL_PATH.read_bytes()
    result = train_py("--promote", "1")
    assert result.returncode != 0
    assert "promotion refused" in result.stdout and "dry run" in result.stdout and "unchanged" in result.stdout
    assert production.read_bytes() == before and utils.DEFAULT_MODEL_PATH.read_bytes() == shipped
    assert not (production.parent / "previous.pth").exists()
    assert registry.alias_version(registry.PRODUCTION_ALIAS) is None


def test_promoting_an_unknown_version_or_with_an_empty_store_is_refused(store: str, production: Path) -> None:
    before = production.read_bytes()
    result = train_py("--promote", "42")
    assert result.returncode != 0 and "no version 42" in result.stdout
    assert production.read_bytes() == before
    result = train_py("--rollback")
    assert result.returncode != 0 and "rollback refused" in result.stdout
    assert production.read_bytes() == before


def register_checkpoint(path: Path) -> str:
    """Log a checkpoint as a run's artifact and register it, as train.py does (for gate tests on a real model)."""
    run = registry.Run("registered-for-test", {"mode": "test"})
    run.log_artifact(path, registry.CHECKPOINT_ARTIFACTS)
    version = run.register("test")
    run.finish()
    assert version is not None
    return version


def test_promotion_that_passes_the_gate_ships_atomically_and_rollback_restores(
    store: str, tmp_path: Path, production: Path, mnist_test_split
) -> None:
    # A candidate as good as production by construction: the shipped weights with a different record.
    raw = torch.load(utils.DEFAULT_MODEL_PATH, weights_only=True)
    raw["meta"] = {**raw["meta"], "note": "candidate"}
    candidate = tmp_path / "candidate" / "model.pth"
    candidate.parent.mkdir()
    torch.save(raw, candidate)
    version = register_checkpoint(candidate)
    original = production.read_bytes()

    result = train_py("--promote", version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert production.read_bytes() == candidate.read_bytes()
    assert (production.parent / "previous.pth").read_bytes() == original
    assert registry.alias_version(registry.PRODUCTION_ALIAS) == version
    record = json.loads((production.parent / "production.json").read_text())
    assert record["registry_version"] == version and record["gate"]["official"] >= RECIPE.gate.min_official
    assert (production.parent / "evaluation.json").is_file()
    assert not list(production.parent.glob(".model.pth.*")), "no temporary file is left behind"
    assert production.stat().st_mode & 0o044 == 0o044, "readable by the image's non-root user"

    result = train_py("--rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    assert production.read_bytes() == original
    assert registry.alias_version(registry.PRODUCTION_ALIAS) is None  # production was not registered before
    assert registry.alias_version(registry.PREVIOUS_ALIAS) == version


@pytest.mark.parametrize(
    "candidate, current, refused",
    [
        ({"official": 0.9968, "drawn": 0.9965}, {"official": 0.9968, "drawn": 0.9965}, []),
        ({"official": 0.9940, "drawn": 0.9990}, None, ["below the 99.5% bar"]),
        ({"official": 0.9956, "drawn": 0.9965}, {"official": 0.9968, "drawn": 0.9965}, ["official test"]),
        ({"official": 0.9975, "drawn": 0.9950}, {"official": 0.9968, "drawn": 0.9965}, ["drawn-digit check"]),
        ({"official": 0.9959, "drawn": 0.9956}, {"official": 0.9968, "drawn": 0.9965}, []),  # 0.09 points: allowed
        # "Not a digit": at least 90 % of the held-out non-digits, no drop of more than a point, never lost.
        ({"official": 0.997, "drawn": 0.996, "flagged": 0.95}, {"official": 0.997, "drawn": 0.996}, []),
        ({"official": 0.997, "drawn": 0.996, "flagged": 0.85}, None, ["below the 90% bar"]),
        (
            {"official": 0.997, "drawn": 0.996, "flagged": 0.93},
            {"official": 0.997, "drawn": 0.996, "flagged": 0.95},
            ["below production's"],
        ),
        (
            {"official": 0.997, "drawn": 0.996, "flagged": None},
            {"official": 0.997, "drawn": 0.996, "flagged": 0.95},
            ["cannot say"],
        ),
        # What users labelled "not a digit" (the retrain's held-out share of it): learnt, or no promotion.
        ({"official": 0.997, "drawn": 0.996, "flagged": 0.95, "labelled_flagged": 0.96}, None, []),
        ({"official": 0.997, "drawn": 0.996, "flagged": 0.95, "labelled_flagged": 0.5}, None, ["has not learnt"]),
    ],
)
def test_gate_refuses_below_the_bar_or_a_drop_of_more_than_a_tenth_of_a_point(
    candidate: dict[str, float], current: dict[str, float] | None, refused: list[str]
) -> None:
    reasons = promotion.gate(candidate, current)
    assert len(reasons) == len(refused)
    for reason, words in zip(reasons, refused):
        assert words in reason


def test_training_without_mlflow_still_trains_and_says_tracking_is_off(tmp_path: Path, mnist_test_split) -> None:
    out = tmp_path / "model.pth"
    hide_mlflow = "import sys; sys.modules['mlflow'] = None"  # `import mlflow` now raises ImportError
    code = f"{hide_mlflow}; import train; sys.exit(train.main(['--dry-run', '--out', {str(out)!r}]))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tracking is off" in result.stdout
    assert utils.load_checkpoint(out).meta["model_version"] is None


# ----------------------------------------------------------------------------------------------------------------
# Retraining from feedback


def give_feedback(database: db.Database, count: int, style: str = "slashed-zero") -> None:
    checkpoint = utils.load_checkpoint()
    rng = np.random.default_rng(5)
    for _ in range(count):
        prediction = utils.classify(checkpoint.model, drawn.draw_style(style, rng))
        row = database.log_prediction(
            prediction.digit, prediction.confidence, prediction.probabilities, prediction.png, checkpoint.version
        )
        database.set_true_label(row, drawn.STYLES[style][0])
    database.log_prediction(3, 0.9, None, utils.to_png(np.zeros((28, 28))), "x")  # unlabelled: not used


def test_iter_labelled_streams_only_labelled_rows_with_images(database: db.Database) -> None:
    give_feedback(database, 5)
    database.set_true_label(database.log_prediction(4, 0.8), 4)  # labelled, but no image: nothing to learn from
    rows = list(database.iter_labelled(batch_size=2))
    assert len(rows) == 5 == database.count_labelled()
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert all(r["true_label"] == 0 and r["image"].startswith(b"\x89PNG") for r in rows)


def test_retrain_refuses_below_the_minimum_and_without_a_database(
    database: db.Database, database_url: str, store: str, tmp_path: Path
) -> None:
    give_feedback(database, 10)
    out = tmp_path / "candidate.pth"
    result = train_py("--retrain", "--dry-run", "--out", str(out), env={"DATABASE_URL": database_url})
    assert result.returncode != 0
    assert "retrain refused: 10 labelled predictions" in result.stdout and "at least 50" in result.stdout
    assert not out.exists() and not out.with_suffix(".json").exists()

    down = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    result = train_py("--retrain", "--dry-run", "--out", str(out), env={"DATABASE_URL": down})
    assert result.returncode != 0 and "database is unreachable" in result.stdout
    assert not out.exists()
    assert client(store).search_registered_models() == []  # a refusal records and registers nothing


def test_retrain_snapshots_feedback_and_writes_a_registered_candidate(
    database: db.Database, database_url: str, store: str, tmp_path: Path, mnist_test_split
) -> None:
    give_feedback(database, 60)
    shipped = utils.DEFAULT_MODEL_PATH.read_bytes()
    out = tmp_path / "candidate.pth"
    result = train_py(
        "--retrain", "--dry-run", "--out", str(out), "--snapshot-dir", str(tmp_path), env={"DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert utils.DEFAULT_MODEL_PATH.read_bytes() == shipped, "retraining never touches the production model"

    model = utils.load_model(out)
    assert utils.classify(model, drawn.draw_style("slashed-zero", np.random.default_rng(1))).probabilities
    summary = json.loads(out.with_suffix(".json").read_text())
    for key in ("official_test_accuracy", "feedback_holdout_before", "feedback_holdout_after", "run_id", "version"):
        assert summary[key] is not None, key
    assert summary["feedback_rows"] == 60 and summary["holdout_rows"] == 12
    assert summary["version"] == "1"

    snapshot = Path(summary["snapshot"])
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert len(manifest["rows"]) == 60
    assert sum(r["split"] == "holdout" for r in manifest["rows"]) == 12
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM predictions WHERE true_label IS NOT NULL ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
    conn.close()
    assert [r["id"] for r in manifest["rows"]] == ids
    first = manifest["rows"][0]
    assert (snapshot / first["file"]).is_file() and len(first["sha256"]) == 64
    run = client(store).get_run(summary["run_id"])
    assert run.data.tags["mode"] == "retrain" and "feedback_holdout_after" in run.data.metrics


def test_retrain_learns_not_a_digit_answers_with_the_eleventh_class(
    database: db.Database, database_url: str, store: str, tmp_path: Path
) -> None:
    give_feedback(database, 40)
    checkpoint = utils.load_checkpoint()
    rng = np.random.default_rng(9)
    for _ in range(20):  # letters the users marked "Not a digit"
        letter = utils.classify(checkpoint.model, drawn.pen_drawing(negatives.LETTER_STROKES["K"], rng))
        row = database.log_prediction(letter.digit, letter.confidence, letter.probabilities, letter.png, "v")
        database.set_true_label(row, db.NOT_A_DIGIT)
    out = tmp_path / "candidate.pth"
    result = train_py(
        "--retrain", "--dry-run", "--out", str(out), "--snapshot-dir", str(tmp_path), env={"DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads(
        (Path(json.loads(out.with_suffix(".json").read_text())["snapshot"]) / "manifest.json").read_text()
    )
    assert sorted(r["label"] for r in manifest["rows"]).count(utils.NOT_DIGIT) == 20, "Not a digit is class 10"
    candidate = utils.load_checkpoint(out)
    assert utils.knows_not_digit(candidate.model), "the candidate keeps the eleventh output"
    assert candidate.model.temperature > 0 and 0 < candidate.model.reject_threshold <= 1, "calibrated again"


def test_help_lists_the_loop_flags() -> None:
    out = train_py("--help").stdout
    for flag in ("--retrain", "--promote", "--rollback", "--device", "--hypothesis", "--min-feedback"):
        assert flag in out


def test_the_doodle_drill_in_small(
    store: str, admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """make doodle-drill with a dry-run retrain (tools/doodle_drill.py): the labelled doodles and digits go through the
    real db.py, the retrain snapshots them, both models are judged on fresh drawings of every family, and the gate
    judges the candidate (a dry run: refused)."""
    from tools import doodle_drill, unseen_doodles

    argv = ["--examples", "6", "--digits", "40", "--fresh", "5", "--dry-run", "--snapshot-dir", str(tmp_path)]
    assert doodle_drill.main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"fed 6 {family} drawings labelled not a digit" in out for family in unseen_doodles.LABELLED)
    table, gate = out.split("the gate, as make promote would judge it")
    rows = [line.split() for line in table.splitlines() if line.startswith(("production ", "candidate "))]
    assert [row[0] for row in rows] == ["production", "candidate"]
    assert all(len(row) == 6 and all(value.endswith("%") for value in row[1:]) for row in rows)
    assert "official test: candidate" in table
    assert "refused: it was trained by a dry run" in gate, "a dry run never passes the gate"
