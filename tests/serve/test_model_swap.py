"""A promoted model reaches a running process without a restart (serve/resources.py): the file replaced atomically,
as `make promote` does, is loaded beside the old one and swapped in; predictions under way finish on the model they
started with, and every row logs the version that answered it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import torch

from serve import resources
from tests.serve.test_api import encoded, post
from tools.load.loadtest_api import write_model
from tools import browser
from tools.processes import wait_for
from training.synthetic import drawn


def stored_versions(dsn: str, answers: list[tuple[int, Any]]) -> dict[str, str]:
    """request id -> the model version its row logged, for these answers' rows."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT request_id::text, model_version FROM predictions WHERE request_id = ANY(%s::uuid[])",
                    ([body["request_id"] for _, body in answers],))  # fmt: skip
        stored = dict(cur.fetchall())
    conn.close()
    return stored


def test_a_replaced_model_file_is_loaded_and_swapped_in_and_the_old_one_still_answers(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    write_model(path, "first")
    first = resources.checkpoint(str(path))
    assert resources.checkpoint(str(path)) is first, "loaded once per file version"
    write_model(path, "second")
    second = resources.checkpoint(str(path))
    assert second.version != first.version and second.meta["note"] == "second"
    assert first.model(torch.zeros(1, 1, 28, 28)).shape == second.model(torch.zeros(1, 1, 28, 28)).shape


def test_a_running_server_answers_with_a_promoted_model_without_a_restart(app_db: str, tmp_path: Path) -> None:
    """Four clients post predictions throughout; the model file is replaced mid-run. Every request is answered,
    the new version answers within seconds, each thread never goes back to the old one, and each row logs the
    version its answer named."""
    path = tmp_path / "model.pth"
    write_model(path, "production")
    env = {"DATABASE_URL": app_db, "SPOOL_PATH": str(tmp_path / "spool.jsonl"), "MODEL_PATH": str(path),
           "API_LIMIT_PER_MINUTE": "0"}  # fmt: skip
    png = encoded(drawn.pen_digit(5, np.random.default_rng(5)))
    stop = threading.Event()
    answers: list[list[tuple[int, Any]]] = [[] for _ in range(4)]

    def client(mine: list[tuple[int, Any]], url: str) -> None:
        while not stop.is_set():
            mine.append(post(url + "/api/predict", png))

    with browser.running_app(env) as url:
        pid = browser.SERVER_PIDS[url]
        threads = [threading.Thread(target=client, args=(mine, url)) for mine in answers]
        for thread in threads:
            thread.start()
        time.sleep(2)
        write_model(path, "promoted")
        swapped = time.monotonic()
        new_version = resources.checkpoint(str(path)).version
        while time.monotonic() - swapped < 30 and not any(
            a[-1][1].get("model_version") == new_version for a in answers if a
        ):
            time.sleep(0.1)
        seen_after = time.monotonic() - swapped
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join(60)
        assert browser.SERVER_PIDS[url] == pid, "the same process throughout"
        every = [answer for mine in answers for answer in mine]
        assert every and all(status == 200 for status, _ in every), {status for status, _ in every}
        # A write that waited past DB_WRITE_TIMEOUT (the load's moment) was spooled: replayed before the count.
        wait_for(lambda: len(stored_versions(app_db, every)) == len(every), 30)
    assert seen_after < 10, f"the promoted model answered {seen_after:.1f} s after the file was replaced"
    for mine in answers:
        versions = [body["model_version"] for _, body in mine]
        first_new = versions.index(new_version)
        assert set(versions[first_new:]) == {new_version}, "never back to the old model"
    stored = stored_versions(app_db, every)
    assert len(stored) == len(every), "every answer stored once"
    assert all(stored[body["request_id"]] == body["model_version"] for _, body in every), "the version that answered"
