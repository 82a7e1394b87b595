"""GET /readyz on a real server: 200 with all well, 503 saying which part failed when the database is unreachable or
the model file is missing, each answered within the probe's timeout (never hanging); Caddy does not route it.

    pytest tests/serve/test_readyz.py
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import db
from tools import browser

PROBE_TIMEOUT = 10  # seconds: the Compose healthcheck's and the deploy gate's own bound


def ready(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=PROBE_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_ready_with_the_model_and_the_database(app_db: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": app_db, "SPOOL_PATH": str(tmp_path / "spool.jsonl"), "MODEL_PATH": ""}
    with browser.running_app(env) as url:
        status, answer = ready(url)
    assert status == 200 and answer["ready"] is True, answer
    assert answer["checks"]["database"] == "ok" and answer["checks"]["model"].startswith("ok")
    handle = db.Database(app_db, spool_path=tmp_path / "check.jsonl")
    assert handle.count_predictions() == 0, "the probe writes nothing"
    handle.close()


@pytest.mark.parametrize(
    "broken, part",
    [
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "database"),
        ({"MODEL_PATH": "/nonexistent/model.pth"}, "model"),
    ],
)
def test_not_ready_says_which_part_failed(app_db: str, tmp_path: Path, broken: dict[str, str], part: str) -> None:
    env = {"DATABASE_URL": app_db, "SPOOL_PATH": str(tmp_path / "spool.jsonl"), "MODEL_PATH": "", **broken}
    with browser.running_app(env) as url:
        status, answer = ready(url)
        health = urllib.request.urlopen(url + "/_stcore/health", timeout=PROBE_TIMEOUT).status
    assert status == 503 and answer["ready"] is False, answer
    assert not answer["checks"][part].startswith("ok"), answer
    assert all(value.startswith("ok") for name, value in answer["checks"].items() if name != part), answer
    assert health == 200, "liveness stays Streamlit's own"
