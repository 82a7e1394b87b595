"""The page tests' app: a real Streamlit server (the shipped model) on the module's throwaway database. A module that
needs its own settings (an operator password, seeded rows) defines its own `app_url`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools import browser


@pytest.fixture(scope="module")
def app_url(app_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spool = tmp_path_factory.mktemp("spool") / "spool.jsonl"
    with browser.running_app({"DATABASE_URL": app_db, "SPOOL_PATH": str(spool), "MODEL_PATH": ""}) as url:
        yield url
