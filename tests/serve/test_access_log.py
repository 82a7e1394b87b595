"""The access log (serve/access_log.py): a line for every request, the page's and the API's, that says what
happened and never what authenticates or what was sent."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from serve import access_log
from tests.serve.test_api import encoded
from tools import browser
from training.synthetic import drawn

PASSWORD = "correct horse battery staple"
GUESS = "wrong-guess-for-the-log"


def test_the_label_route_s_request_id_is_not_written_down() -> None:
    assert access_log.logged_path("/api/predictions/0b7e3c1a-1111-4222-8333-444455556666/label") == (
        "/api/predictions/{request_id}/label"
    )
    assert access_log.logged_path("/api/predict") == "/api/predict"
    fields = json.loads(access_log.line("GET", "/", 200, 1.234, "203.0.113.9"))
    assert fields["method"] == "GET" and fields["status"] == 200 and fields["ms"] == 1.2
    assert fields["client"] == "203.0.113.9" and fields["access"] == 1


def call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_every_request_has_a_line_without_credentials_links_ids_or_images(app_db: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": app_db, "SPOOL_PATH": str(tmp_path / "spool.jsonl"), "MODEL_PATH": "",
           "OPERATOR_PASSWORD": PASSWORD, "API_LIMIT_PER_MINUTE": "0"}  # fmt: skip
    png = encoded(drawn.pen_digit(7, np.random.default_rng(4)))
    guess = "Basic " + base64.b64encode(f"operator:{GUESS}".encode()).decode()
    with browser.running_app(env) as url:
        statuses = {
            ("GET", "/"): call(url + "/"),
            ("POST", "/api/predict"): call(url + "/api/predict", png, {"Content-Type": "image/png"}),
            ("GET", "/metrics"): call(url + "/metrics", headers={"Authorization": guess}),
            ("GET", "/export/predictions.csv"): call(url + "/export/predictions.csv?link=secret-link-token"),
        }
        request_id = "0b7e3c1a-1111-4222-8333-444455556666"
        label = call(f"{url}/api/predictions/{request_id}/label", b'{"label": 7}', {"Content-Type": "application/json"})
        statuses[("POST", "/api/predictions/{request_id}/label")] = label
        port = url.rsplit(":", 1)[1]
        time.sleep(0.5)
    text = (browser.ARTIFACTS / f"streamlit-{port}.log").read_text()
    lines = [json.loads(row) for row in text.splitlines() if row.startswith('{"access"')]
    logged = {(row["method"], row["path"]): row for row in lines}
    for (method, path), status in statuses.items():
        row = logged[(method, path)]
        assert row["status"] == status and row["ms"] >= 0 and row["client"] == "127.0.0.1", row
    assert statuses[("POST", "/api/predict")] == 200 and statuses[("GET", "/metrics")] == 401
    for secret in (GUESS, base64.b64encode(f"operator:{GUESS}".encode()).decode(), "secret-link-token", request_id):
        assert secret not in text, f"{secret!r} reached the log"
    assert base64.b64encode(png[:48]).decode()[:40] not in text and "IHDR" not in text, "no image bytes"
