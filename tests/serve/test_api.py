"""The HTTP API and /metrics on a real server (streamlit run server.py) with a real PostgreSQL and the shipped model:
drawn digits read right, a letter is not a digit, bad bodies get 4xx JSON, labels land on their row, and the
metrics count exactly what was done.

    pytest tests/serve/test_api.py
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

import db
from tools import browser, pg
from training.synthetic import drawn
from training.synthetic.numbers import number_drawing

OPERATOR_PASSWORD = "metrics for the operator"


def post(url: str, body: bytes, content_type: str = "image/png", auth: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": content_type, **({"Authorization": auth} if auth else {})}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def encoded(drawing: np.ndarray, fmt: str = "PNG") -> bytes:
    image = Image.fromarray(drawing)
    buffer = io.BytesIO()
    (image.convert("RGB") if fmt == "JPEG" else image).save(buffer, fmt)
    return buffer.getvalue()


def samples(metrics_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text by (name, labels); parsing fails on anything that is not Prometheus text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def api_url(app_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = db.Database(app_db)
    database.init_db()  # the tests count rows before the server's first write
    database.close()
    spool = tmp_path_factory.mktemp("spool") / "spool.jsonl"
    env = {"DATABASE_URL": app_db, "SPOOL_PATH": str(spool), "MODEL_PATH": "", "OPERATOR_PASSWORD": ""}
    with browser.running_app(env) as url:
        yield url


def test_drawn_digits_are_read_right_and_logged_as_api_rows(api_url: str, app_db: str, mnist_test_split: Any) -> None:
    rng = np.random.default_rng(25)
    picks = rng.choice(len(mnist_test_split.labels), size=10, replace=False)
    cases = [
        (drawn.canvas_drawing(mnist_test_split.images[int(i)].squeeze(0).numpy(), rng), int(mnist_test_split.labels[i]))
        for i in picks
    ] + [(drawn.pen_digit(d, rng), d) for d in range(10)]
    before = pg.query(app_db, "SELECT count(*) FROM predictions WHERE source = 'api'")[0][0]
    right, answers = 0, []
    for n, (drawing, truth) in enumerate(cases):
        status, answer = post(api_url + "/api/predict", encoded(drawing, "JPEG" if n % 4 == 3 else "PNG"))
        assert status == 200, answer
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-6
        assert answer["model_version"] and answer["inference_ms"] > 0 and answer["id"] > 0
        right += answer["is_digit"] and answer["digit"] == truth
        answers.append(answer)
    assert right / len(cases) >= 0.9, f"{right}/{len(cases)} drawn digits read right"
    assert pg.query(app_db, "SELECT count(*) FROM predictions WHERE source = 'api'")[0][0] == before + len(cases)
    (row,) = pg.query(
        app_db, "SELECT predicted_digit, request_id::text, visitor FROM predictions WHERE id = %s", answers[0]["id"]
    )
    assert row == (answers[0]["digit"], answers[0]["request_id"], None), "no visitor: no History shows an API row"


def test_a_drawn_letter_is_not_a_digit(api_url: str) -> None:
    letter = np.zeros((280, 280), dtype=np.uint8)
    image = Image.fromarray(letter)
    pen = ImageDraw.Draw(image)
    for stroke in browser.NOT_DIGITS["A"]:
        pen.line(stroke, fill=255, width=18, joint="curve")
    status, answer = post(api_url + "/api/predict", encoded(drawn.as_canvas(image)))
    assert status == 200 and answer["is_digit"] is False, answer
    assert answer["not_digit_score"] > 0.5


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (b"", "image/png", 400),
        (b"plain words, not a picture", "text/plain", 415),
        (b"plain words, not a picture", "application/octet-stream", 415),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", 400),  # a PNG's signature and nothing readable after
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (8 * 1024 * 1024), "image/png", 413),
        (encoded(np.zeros((280, 280, 4), dtype=np.uint8)), "image/png", 400),  # blank: nothing drawn
    ],
)
def test_bad_bodies_get_a_json_error_and_no_row(
    api_url: str, app_db: str, body: bytes, content_type: str, status: int
) -> None:
    before = pg.query(app_db, "SELECT count(*) FROM predictions")[0][0]
    got, answer = post(api_url + "/api/predict", body, content_type)
    assert got == status and answer["error"], answer
    assert "Traceback" not in answer["error"]
    assert pg.query(app_db, "SELECT count(*) FROM predictions")[0][0] == before


def test_a_number_is_read_whole_logged_as_one_row_and_labelled_as_a_number(
    api_url: str, app_db: str, mnist_test_split: Any
) -> None:
    """Several digits side by side: `number` and each digit's box, one row holding them; {"number": ...} labels it."""
    rng = np.random.default_rng(45)
    images, labels = mnist_test_split.images.squeeze(1).numpy(), mnist_test_split.labels.numpy()
    picks = [int(np.flatnonzero(labels == d)[5]) for d in (2, 0, 2, 6)]
    status, answer = post(api_url + "/api/predict", encoded(number_drawing([images[i] for i in picks], rng, 100, 0.3)))
    assert status == 200 and answer["number"] == "2026", answer
    assert [d["digit"] for d in answer["digits"]] == [2, 0, 2, 6] and answer["digit"] is None
    lefts = [d["box"][0] for d in answer["digits"]]
    assert lefts == sorted(lefts) and all(len(d["probabilities"]) == 10 for d in answer["digits"])
    label_url = api_url + f"/api/predictions/{answer['request_id']}/label"
    assert post(label_url, b'{"number": "2025"}', "application/json")[0] == 200
    for bad in (b'{"number": "20x5"}', b'{"number": 2025}', b'{"number": "123456789"}'):
        assert post(label_url, bad, "application/json")[0] == 400, bad
    sql = "SELECT jsonb_array_length(digits), true_number, source FROM predictions WHERE id = %s"
    (row,) = pg.query(app_db, sql, answer["id"])
    assert row == (4, "2025", "api")


def test_labels_land_on_their_row_and_only_there(api_url: str, app_db: str) -> None:
    rng = np.random.default_rng(7)
    first = post(api_url + "/api/predict", encoded(drawn.pen_digit(3, rng)))[1]
    second = post(api_url + "/api/predict", encoded(drawn.pen_digit(4, rng)))[1]
    label_url = api_url + "/api/predictions/{}/label"
    assert post(label_url.format(first["request_id"]), b'{"label": 8}', "application/json") == (
        200,
        {"request_id": first["request_id"], "label": 8, "stored": True},
    )
    status, _ = post(label_url.format(second["request_id"]), b'{"label": "Not a digit"}', "application/json")
    assert status == 200
    labelled = pg.query(
        app_db, "SELECT id, true_label, labelled_not_digit FROM predictions WHERE id IN (%s, %s) ORDER BY id",
        first["id"], second["id"],
    )  # fmt: skip
    assert labelled == [(first["id"], 8, False), (second["id"], None, True)]
    (by,) = pg.query(
        app_db, "SELECT DISTINCT labelled_by FROM predictions WHERE id IN (%s, %s)", first["id"], second["id"]
    )
    assert by[0].startswith("api:") and "127.0.0.1" not in by[0], "who labelled, counted apart and not named"
    assert post(label_url.format("8d5d3c7e-0000-4000-8000-000000000000"), b'{"label": 1}', "application/json")[0] == 404
    assert post(label_url.format("not-a-request-id"), b'{"label": 1}', "application/json")[0] == 404
    for bad in (b'{"label": 12}', b'{"label": true}', b'{"label": "seven"}', b"{}", b"[1]", b"not json"):
        status, answer = post(label_url.format(first["request_id"]), bad, "application/json")
        assert status == 400 and answer["error"], (bad, answer)
    assert pg.query(app_db, "SELECT true_label FROM predictions WHERE id = %s", first["id"]) == [(8,)], "unchanged"


def test_metrics_parse_and_count_exactly_what_was_done(api_url: str) -> None:
    status, text = get(api_url + "/metrics")
    assert status == 200
    before = samples(text)
    rng = np.random.default_rng(11)
    answers = [post(api_url + "/api/predict", encoded(drawn.pen_digit(d, rng)))[1] for d in (1, 2, 5)]
    post(api_url + "/api/predict", b"", "image/png")
    post(api_url + f"/api/predictions/{answers[0]['request_id']}/label", b'{"label": 1}', "application/json")
    after = samples(get(api_url + "/metrics")[1])

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    digits = sum(answer["is_digit"] for answer in answers)
    assert grew("mnist_predictions_total", source="api", outcome="digit") == digits
    assert grew("mnist_predictions_total", source="api", outcome="not_digit") == 3 - digits
    assert grew("mnist_predictions_total", source="api", outcome="refused") == 1
    assert grew("mnist_predictions_total", source="page", outcome="digit") == 0
    assert grew("mnist_labels_total", source="api") == 1
    assert grew("mnist_inference_seconds_count", source="api") == 3
    assert grew("mnist_db_write_seconds_count") == 3
    assert ("mnist_inference_seconds_bucket", (("le", "+Inf"), ("source", "api"))) in after
    assert after[("mnist_database_up", ())] == 1.0 and after[("mnist_spool_depth", ())] == 0.0
    assert grew("mnist_feedback_labelled") == 1, "the label above, read back from the rollup"
    assert any(name == "mnist_model_info" and dict(labels)["version"] for name, labels in after)


def test_limits_and_the_operator_s_metrics(app_db: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": app_db,
        "SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        "MODEL_PATH": "",
        "OPERATOR_PASSWORD": OPERATOR_PASSWORD,
        "API_LIMIT_PER_MINUTE": "2",
    }
    with browser.running_app(env) as url:
        png = encoded(drawn.pen_digit(6, np.random.default_rng(1)))
        answers = [post(url + "/api/predict", png) for _ in range(3)]
        assert [status for status, _ in answers] == [200, 200, 429]
        label_url = url + "/api/predictions/{}/label"
        labelled = [
            post(label_url.format(answers[0][1]["request_id"]), b'{"label": 6}', "application/json") for _ in range(3)
        ]
        assert [status for status, _ in labelled] == [200, 200, 429], "labels have the API's limit too"
        assert "Too many labels" in labelled[2][1]["error"]
        assert get(url + "/metrics")[0] == 401, "the operator's when OPERATOR_PASSWORD is set"
        assert get(url + "/metrics", "Basic b3BlcmF0b3I6d3Jvbmc=")[0] == 401  # operator:wrong
        good = "Basic " + base64.b64encode(f"operator:{OPERATOR_PASSWORD}".encode()).decode()
        status, text = get(url + "/metrics", good)
        assert status == 200
        assert samples(text)[("mnist_predictions_total", (("outcome", "refused"), ("source", "api")))] == 1


@pytest.mark.parametrize("uvicorn_trusts", [None, ""], ids=["plain-streamlit-run", "as-the-image-runs"])
def test_a_client_on_loopback_cannot_pick_its_identity_with_x_forwarded_for(
    app_db: str, tmp_path: Path, uvicorn_trusts: str | None
) -> None:
    """No proxy in front (`streamlit run server.py`, where uvicorn believes loopback's header, or `make run`): a
    spoofed X-Forwarded-For does not make a new client, so it does not dodge the limit."""
    env = {"DATABASE_URL": app_db, "SPOOL_PATH": str(tmp_path / "spool.jsonl"), "MODEL_PATH": "",
           "API_LIMIT_PER_MINUTE": "2", "FORWARDED_ALLOW_IPS": uvicorn_trusts}  # fmt: skip
    png = encoded(drawn.pen_digit(3, np.random.default_rng(2)))

    def as_client(url: str, claimed: str) -> int:
        headers = {"Content-Type": "image/png", "X-Forwarded-For": claimed}
        request = urllib.request.Request(url + "/api/predict", data=png, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    with browser.running_app(env) as url:
        statuses = [as_client(url, "198.51.100.1"), as_client(url, "198.51.100.1"), as_client(url, "198.51.100.2")]
    assert statuses == [200, 200, 429]


def test_at_the_spool_s_cap_the_api_refuses_with_503_and_stores_nothing_more(tmp_path: Path) -> None:
    """The database away and SPOOL_MAX_MB reached: predictions and labels get 503 with Retry-After and a reason,
    the spool stays under its cap, and the operator's metrics say how full it is."""
    spool = tmp_path / "spool.jsonl"
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "SPOOL_PATH": str(spool), "MODEL_PATH": "",
           "SPOOL_MAX_MB": "0.01", "API_LIMIT_PER_MINUTE": "0", "DB_CONNECT_TIMEOUT": "1"}  # fmt: skip
    png = encoded(drawn.pen_digit(4, np.random.default_rng(3)))
    with browser.running_app(env) as url:
        answers = []
        for _ in range(60):
            answers.append(post(url + "/api/predict", png))
            if answers[-1][0] != 200:
                break
        status, refusal = answers[-1]
        kept = [answer for code, answer in answers if code == 200]
        assert status == 503 and "nothing was saved" in refusal["error"], refusal
        assert kept and all(answer["id"] < 0 for answer in kept), "spooled until the cap"
        labels_kept = 0
        for _ in range(30):  # a label is shorter than a prediction: some may still fit in what is left
            label = post(url + f"/api/predictions/{kept[0]['request_id']}/label", b'{"label": 4}', "application/json")
            if label[0] != 202:
                break
            labels_kept += 1
        assert label[0] == 503 and "nothing was saved" in label[1]["error"], label
        state = samples(get(url + "/metrics")[1])
    cap = 0.01 * 2**20
    assert spool.stat().st_size <= cap
    assert state[("mnist_spool_max_bytes", ())] == int(cap)
    assert state[("mnist_spool_bytes", ())] == spool.stat().st_size
    assert state[("mnist_spool_depth", ())] == len(kept) + labels_kept


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_lints_the_real_metrics(api_url: str) -> None:
    status, text = get(api_url + "/metrics")
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert status == 200 and result.returncode == 0, result.stdout + result.stderr


def test_the_api_load_test_runs_end_to_end_and_counts_every_row(tmp_path: Path) -> None:
    """make loadtest-api in small: Locust for a few seconds against a fresh server, its model file replaced halfway
    (as make promote does); every answer is one row, and the rows show both versions."""
    result = subprocess.run(
        # The swap counts from the first API row, and Locust's clients can take seconds to start on a busy machine:
        # room on both sides of it (a CI run once ended before the swap at 5 s with the swap 2 s in).
        [sys.executable, "-m", "tools.load.loadtest_api", "--users", "2", "--seconds", "9", "--swap-after", "1"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads((browser.ARTIFACTS / "loadtest-api.json").read_text())
    assert figures["api"]["requests"] > 0 and figures["api"]["errors"] == 0 and figures["rows_equal_requests"]
    assert figures["in_process_per_second"] > 0 and figures["ratio"] > 0
    assert figures["distinct_request_ids"] == figures["rows"], "none answered twice"
    assert figures["swapped"] and len(figures["rows_per_model_version"]) == 2, "the new model answered, no restart"
