"""Two app processes behind Caddy (the repository's Caddyfile), driven through the proxy by the load test, with one
replica killed mid-run and started again: the small version of `make loadtest REPLICAS=2 KILL_AFTER=20`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tools import browser
from tools import replicas
from config.paths import PROJECT_DIR

pytestmark = pytest.mark.slow  # starts replicas behind a real Caddy

ROOT = PROJECT_DIR


def run_drill(admin_dsn: str, *args: str) -> dict:
    """tools.load.loadtest through Caddy with `args`; its report and exit code."""
    if replicas.caddy_path() is None or browser.chromium_path() is None:
        pytest.skip("caddy and chromium are needed (apt-get install caddy chromium)")
    report_path = browser.ARTIFACTS / "loadtest.json"
    report_path.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "tools.load.loadtest", *args, "--spread", "--deadline", "400"],
        cwd=ROOT, env={**os.environ, "TEST_DATABASE_URL": admin_dsn}, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert report_path.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    return {"code": done.returncode, "stdout": done.stdout[-2000:], **json.loads(report_path.read_text())}


@pytest.fixture(scope="module")
def drill(admin_dsn: str) -> dict:
    return run_drill(
        admin_dsn, "--replicas", "2", "--users", "6", "--predictions", "3", "--kill-after", "12", "--down-for", "5"
    )


def test_every_user_is_answered_through_the_proxy(drill: dict) -> None:
    assert drill["errors"] == []
    assert drill["answered"] == drill["attempted"] == 18
    assert drill["code"] == 0


def test_both_replicas_served_users_and_the_killed_one_had_some(drill: dict) -> None:
    served = drill["replicas"]
    assert served["killed"]
    assert all(seconds > 0.5 for seconds in served["server_cpu_seconds"].values()), served
    assert served["connections_at_kill"]["replica 1"] > 0, "the kill hit a replica with users on it"


def test_every_prediction_is_stored_exactly_once_and_nothing_shown_is_lost(drill: dict) -> None:
    stored = drill["database"]
    assert stored["rows"] == stored["distinct_requests"], "no prediction stored twice"
    assert stored["rows"] >= drill["answered"], "every answer a user saw has its row"
    assert stored["confirmed_ids_found"] == stored["confirmed_ids"] > 0, "each row a page said it saved, labelled"


def test_a_rolling_restart_under_browser_and_api_load_loses_and_doubles_nothing(admin_dsn: str) -> None:
    """make drill-rolling in small: two replicas restarted in turn (SIGTERM, then a successor) while browser users
    and an API client go on through Caddy; every answer of either kind is one row."""
    report = run_drill(admin_dsn, "--replicas", "2", "--users", "4", "--predictions", "3", "--roll-after", "4",
                       "--api-clients", "1")  # fmt: skip
    assert report["replicas"]["rolled"] and report["answered"] == report["attempted"] == 12, report
    api, stored = report["api"], report["database"]
    assert api["answered"] > 0 and api["rows"] == api["answered"] == api["answered_stored_once"], api
    assert stored["rows"] == stored["distinct_requests"], "no request stored twice"
    assert stored["rows"] - api["rows"] >= report["answered"], "every answer a user saw has its row"
    assert stored["confirmed_ids_found"] == stored["confirmed_ids"], "each row a page said it saved, labelled"
    assert report["code"] == 0, report["stdout"]
