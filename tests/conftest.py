"""Shared fixtures: a throwaway PostgreSQL database per test run, MNIST test files, the shipped model; and the
markers that say what a test needs (`make check` runs the tests that need none of them)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import db
import utils
from tools import browser, pg
from training import dataset
from training.synthetic import drawn

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds an AppTest run may take (the first loads the model)
OPERATOR_PASSWORD = "correct horse battery staple"  # the page tests' operator (AppTest and the page fixture)


# What a test needs, read off the fixtures it uses: a module that needs more (a training dry run, a server it starts)
# says so itself with `pytestmark`.
NEEDS = {
    "postgres": {"admin_dsn", "database_url", "fresh_database_url", "database", "app_db"},
    "browser": {"chromium"},
    "mnist": {"mnist_test_split"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)


@pytest.fixture(scope="session", autouse=True)
def private_tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every run a test trains (train.py in a subprocess too) goes to a store of the test run's own: never the
    developer's mlruns/ or a team server that MLFLOW_TRACKING_URI names (test_lifecycle gives each test its own)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return pg.admin_dsn(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
def database_url(admin_dsn: str) -> Iterator[str]:
    """One throwaway database for the whole run, dropped at the end."""
    dsn = pg.create_database(admin_dsn)
    yield dsn
    pg.drop_database(admin_dsn, dsn)


@pytest.fixture
def fresh_database_url(admin_dsn: str) -> Iterator[str]:
    """A database of its own for a test that needs an empty server-side state (migrations)."""
    dsn = pg.create_database(admin_dsn, prefix="mnist_fresh")
    yield dsn
    pg.drop_database(admin_dsn, dsn)


@pytest.fixture
def database(database_url: str, tmp_path: Path) -> Iterator[db.Database]:
    """A `Database` on the run's database with an empty predictions table and its own spool."""
    handle = db.Database(database_url, spool_path=tmp_path / "spool.jsonl")
    handle.init_db()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE predictions RESTART IDENTITY")
    conn.close()
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def mnist_test_split() -> "object":
    """The official 10k MNIST test images via training.dataset.load_mnist (MNIST_DIR offline, else data/ or a
    download)."""
    source = os.environ.get("MNIST_DIR")
    raw = dataset.DATA_DIR / "MNIST" / "raw"
    if not source and not all((raw / name).is_file() for name in dataset.MNIST_FILES):
        pytest.skip("MNIST files unavailable: set MNIST_DIR to a folder with the four IDX files (or run make data)")
    _, test_split, _ = dataset.load_mnist(source)
    return test_split


@pytest.fixture(scope="session")
def checkpoint() -> utils.Checkpoint:
    return utils.load_checkpoint(utils.DEFAULT_MODEL_PATH)


FlaggedCounter = Callable[..., dict[str, int]]


@pytest.fixture(scope="session")
def flagged_of(checkpoint: utils.Checkpoint) -> FlaggedCounter:
    """How many of ten pen drawings of each named stroke set the shipped model flags as not a digit."""

    def count(
        strokes_by_name: dict[str, Any], seed: int, aspect: tuple[float, float], height: tuple[int, int]
    ) -> dict[str, int]:
        rng = np.random.default_rng(seed)
        return {
            name: sum(
                not utils.classify(
                    checkpoint.model, drawn.pen_drawing(strokes, rng, aspect=aspect, height=height)
                ).is_digit
                for _ in range(10)
            )
            for name, strokes in strokes_by_name.items()
        }

    return count


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (never a browser Playwright downloads); one per test module."""
    path = browser.chromium_path()
    if path is None:
        pytest.skip("Chromium not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=path, args=browser.CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def app_db(admin_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway database for one module's running app, named after the module."""
    dsn = pg.create_database(
        admin_dsn, prefix="mnist_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    )
    yield dsn
    pg.drop_database(admin_dsn, dsn)


@pytest.fixture
def page(
    database: db.Database, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], AppTest]]:
    """A factory for a fresh AppTest of app.py on the test database (cached resources cleared first)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SPOOL_PATH", str(tmp_path / "app-spool.jsonl"))
    monkeypatch.setenv("OPERATOR_PASSWORD", OPERATOR_PASSWORD)
    monkeypatch.delenv("MODEL_PATH", raising=False)

    def make() -> AppTest:
        st.cache_resource.clear()
        st.cache_data.clear()  # the loop view's figures (views/loop.py) are cached for minutes
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        return at.run()

    yield make
    st.cache_resource.clear()
