"""Experiment tracking and the model registry (MLflow): every train.py run is one MLflow run and one new version of
the registered model `mnist-digit-classifier`.

    make mlflow          # the MLflow UI over the same store, on http://127.0.0.1:5000

The store is `MLFLOW_TRACKING_URI` when set (a team's server, or any SQLite file), else a SQLite file and an
artifact folder under `mlruns/` (git-ignored; no server needed). MLflow is a development dependency
(requirements-dev.txt): without it `train.py` still trains and says that tracking is off. The app never imports
this module; the production model is the file `models/model.pth`, and the registry's `production` alias mirrors it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.paths import PROJECT_DIR
from config.settings import settings

REGISTERED_MODEL = "mnist-digit-classifier"
DEFAULT_EXPERIMENT = "mnist-digit-classifier"
MLRUNS_DIR = PROJECT_DIR / "mlruns"
PRODUCTION_ALIAS = "production"
PREVIOUS_ALIAS = "previous"  # the production version before the last promotion: what `make rollback` restores
CHECKPOINT_ARTIFACTS = "checkpoint"  # the run's artifact folder that a registered version points at
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars for 1 MB downloads


class RegistryError(RuntimeError):
    """The tracking store or registry cannot do what was asked (unknown version, unreachable server, ...)."""


@functools.cache
def mlflow_installed() -> bool:
    try:
        import mlflow  # noqa: F401  (a second or two, once per process)
    except ImportError:
        return False
    return True


def tracking_uri() -> str:
    return settings().mlflow_tracking_uri or f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store's file; a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def git_commit() -> str:
    """The commit the code was run from (with '-dirty' if the work tree had changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _client() -> Any:
    from mlflow import MlflowClient

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class Run:
    """One MLflow run, or (tracking off) a run that records nothing; the same calls either way."""

    def __init__(self, name: str, tags: Mapping[str, str] | None = None, enabled: bool = True) -> None:
        self.enabled = enabled and mlflow_installed()
        self.run_id: str | None = None
        self.artifact_uri: str | None = None
        if not self.enabled:
            reason = "mlflow is not installed (pip install -r requirements-dev.txt)" if enabled else "--no-track"
            print(f"tracking is off: {reason}; the run is not recorded and no version is registered")
            return
        try:
            self.client = _client()
            experiment_name = settings().mlflow_experiment_name
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = (
                experiment.experiment_id
                if experiment
                else self.client.create_experiment(experiment_name, artifact_location=artifact_root(tracking_uri()))
            )
            run = self.client.create_run(experiment_id, run_name=name, tags=dict(tags or {}))
        except Exception as exc:  # an unreachable server, a locked or foreign SQLite file, ...
            raise RegistryError(f"cannot start an MLflow run at {tracking_uri()}: {exc}") from exc
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri
        print(f"tracking: run {self.run_id} in experiment {experiment_name!r} at {tracking_uri()}")

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.enabled:
            from mlflow.entities import Param

            items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
            self.client.log_batch(self.run_id, params=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.enabled:
            for key, value in metrics.items():
                self.client.log_metric(self.run_id, key, float(value), step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.enabled:
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if self.enabled and path.exists():
            self.client.log_artifact(self.run_id, str(path), folder)

    def register(self, description: str = "") -> str | None:
        """A new version of the registered model, pointing at this run's checkpoint folder; None when off."""
        if not self.enabled:
            return None
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(REGISTERED_MODEL)
        except MlflowException:
            self.client.create_registered_model(
                REGISTERED_MODEL, description="Handwritten digit CNN served by the MNIST Digit Classifier app."
            )
        version = self.client.create_model_version(
            REGISTERED_MODEL,
            source=f"{self.artifact_uri}/{CHECKPOINT_ARTIFACTS}",
            run_id=self.run_id,
            description=description,
        )
        self.set_tags({"model_version": str(version.version)})
        return str(version.version)

    def finish(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self.client.set_terminated(self.run_id, status)


# ----------------------------------------------------------------------------------------------------------------
# Registry look-ups for promotion and rollback


def download_version(version: str, dst: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file of registered version `version` (downloaded into `dst`) and the version's facts."""
    if not mlflow_installed():
        raise RegistryError("mlflow is not installed (pip install -r requirements-dev.txt): no registry to read")
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        found = client.get_model_version(REGISTERED_MODEL, str(version))
    except MlflowException as exc:
        raise RegistryError(
            f"{REGISTERED_MODEL} has no version {version} in {tracking_uri()} ({exc.message.splitlines()[0]})"
        ) from exc
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=found.source, dst_path=str(dst)))
    files = sorted(folder.glob("*.pth"))
    if not files:
        raise RegistryError(f"version {version} points at {found.source}, which holds no checkpoint")
    run_artifacts = Path(tempfile.mkdtemp(dir=dst))
    facts = {"version": str(found.version), "run_id": found.run_id, "source": found.source, "reports": run_artifacts}
    if found.run_id:  # the run's reports (metrics.json, curves) travel with a promoted model
        for name in ("metrics.json", "training_curves.png", "not_digit_tradeoff.png"):
            try:
                client.download_artifacts(found.run_id, name, str(run_artifacts))
            except (MlflowException, OSError):
                pass
    return files[0], facts


def alias_version(alias: str) -> str | None:
    """The version an alias points at, or None (no alias, no registered model, or no MLflow)."""
    if not mlflow_installed():
        return None
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(REGISTERED_MODEL, alias).version)
    except MlflowException:
        return None


def set_alias(alias: str, version: str | None) -> None:
    """Point `alias` at `version`, or remove it when `version` is None (no-op without MLflow)."""
    if not mlflow_installed():
        return
    from mlflow.exceptions import MlflowException

    client = _client()
    if version is None:
        try:
            client.delete_registered_model_alias(REGISTERED_MODEL, alias)
        except MlflowException:
            pass
        return
    client.set_registered_model_alias(REGISTERED_MODEL, alias, str(version))
