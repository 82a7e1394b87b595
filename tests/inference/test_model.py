"""The shipped checkpoint and train.py: loads safely, its evidence is true, training runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training import dataset
from training.recipe import RECIPE
from training.loop import evaluate
import utils
from config.paths import PROJECT_DIR

ROOT = PROJECT_DIR


def test_checkpoint_loads_with_weights_only_and_carries_its_config_and_evidence() -> None:
    raw = torch.load(utils.DEFAULT_MODEL_PATH, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "config", "meta"}
    assert raw["config"]["mean"] == pytest.approx(utils.MNIST_MEAN) and raw["config"]["std"] == pytest.approx(
        utils.MNIST_STD
    )
    meta = raw["meta"]
    for key in ("test_accuracy", "val_accuracy", "epochs_run", "train_seconds", "torch_version", "trained_at"):
        assert key in meta, key
    assert set(meta["data_sha256"]) == set(dataset.MNIST_FILES)
    assert meta["dry_run"] is False
    assert utils.DEFAULT_MODEL_PATH.stat().st_size < 2_000_000


def test_shipped_model_reaches_the_bar_and_its_recorded_accuracy_is_true(
    mnist_test_split, checkpoint: utils.Checkpoint
) -> None:
    report = evaluate(checkpoint.model, mnist_test_split)
    assert report["total"] == 10_000
    assert abs(report["correct"] - checkpoint.meta["test_correct"]) <= 1  # float batching may flip a near-tie
    assert report["accuracy"] == pytest.approx(checkpoint.meta["test_accuracy"], abs=1e-4)
    assert report["accuracy"] >= 0.996


def test_serving_folds_batch_norm_and_answers_as_the_checkpoint_does(mnist_test_split) -> None:
    plain = utils.load_checkpoint().model
    fused = utils.load_model()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()), "training paths keep batch norm"
    images = mnist_test_split.images[:500].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = plain(images), fused(images)
    assert torch.allclose(got, expected, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert fused.reject_threshold == plain.reject_threshold and fused.temperature == plain.temperature


def test_missing_model_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(utils.ModelLoadError, match=r"nope\.pth not found.*make train"):
        utils.load_model(missing)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a checkpoint", b"PK\x03\x04 broken zip"],
    ids=["empty", "text", "broken-zip"],
)
def test_corrupt_model_file_names_the_file_and_the_fix(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(utils.ModelLoadError, match=r"model\.pth is corrupt.*make train"):
        utils.load_model(path)


def test_incompatible_checkpoint_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(3)}, "config": {"channels": [8, 8, 8]}}, path)
    with pytest.raises(utils.ModelLoadError, match="does not fit MNISTClassifier"):
        utils.load_model(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(utils.ModelLoadError, match="not an MNISTClassifier checkpoint"):
        utils.load_model(path)


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    """weights_only=True: a checkpoint carrying arbitrary objects is rejected, not unpickled."""
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "config": {}, "meta": Path("/etc/passwd")}, path)
    with pytest.raises(utils.ModelLoadError, match="corrupt"):
        utils.load_model(path)


def test_place_mnist_accepts_gz_or_plain_files(tmp_path: Path) -> None:
    source = os.environ.get("MNIST_DIR")
    if not source:
        pytest.skip("MNIST_DIR not set")
    raw = dataset.place_mnist(Path(source), tmp_path / "gz")
    assert sorted(p.name for p in raw.iterdir()) == sorted(dataset.MNIST_FILES)
    again = dataset.place_mnist(raw, tmp_path / "plain")  # uncompressed source works too
    for name in dataset.MNIST_FILES:
        assert (again / name).read_bytes() == (raw / name).read_bytes()
    with pytest.raises(FileNotFoundError, match="four MNIST IDX files"):
        dataset.place_mnist(tmp_path / "empty", tmp_path / "x")


def test_help_documents_every_flag_with_its_default() -> None:
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--data-dir", "--out", "--dry-run", "--evaluate"):
        assert flag in out.stdout
    assert "(default: 16)" in out.stdout and "(default: 128)" in out.stdout


def test_dry_run_trains_end_to_end_on_real_mnist(tmp_path: Path, mnist_test_split) -> None:
    out = tmp_path / "model.pth"
    result = subprocess.run(
        [sys.executable, "train.py", "--dry-run", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checkpoint = utils.load_checkpoint(out)
    assert checkpoint.meta["dry_run"] is True and checkpoint.meta["epochs_run"] == 1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and {"train_loss", "val_accuracy", "seconds"} <= set(metrics["history"][0])
    assert (tmp_path / "training_curves.png").stat().st_size > 0
    assert utils.DEFAULT_MODEL_PATH.is_file()  # the shipped model is untouched


def test_augmentation_keeps_shape_range_and_is_seeded() -> None:
    images = torch.rand(16, 1, 28, 28)
    a = dataset.augment(images, torch.Generator().manual_seed(3), RECIPE.augmentation)
    b = dataset.augment(images, torch.Generator().manual_seed(3), RECIPE.augmentation)
    assert a.shape == images.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
