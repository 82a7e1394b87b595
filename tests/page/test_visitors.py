"""Who sees what, on the real app: two browsers as two visitors, the operator signed in, the export with and without
credentials, wrong passwords throttled, and the security headers read from a real Caddy on loopback."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools import browser, pg, replicas

pytestmark = pytest.mark.browser
PASSWORD = "a long operator password"
ATTEMPTS = 5
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url(app_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "DATABASE_URL": app_db,
        "SPOOL_PATH": str(tmp_path_factory.mktemp("spool") / "spool.jsonl"),
        "MODEL_PATH": "",
        "OPERATOR_PASSWORD": PASSWORD,
        "OPERATOR_MAX_ATTEMPTS": str(ATTEMPTS),
        "OPERATOR_LOCKOUT_SECONDS": "600",
    }
    with browser.running_app(env) as url:
        yield url


def fetch(url: str, user: str | None = None, password: str | None = None) -> tuple[int, Any, bytes]:
    """(status, headers, body); the headers keep repeated ones (Set-Cookie) apart: headers.get_all(name)."""
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def visitor_draws(chromium: Any, url: str, digit: int) -> Any:
    page = chromium.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(url)
    browser.canvas_box(page)
    page.wait_for_timeout(300)
    browser.mouse_strokes(page, browser.DIGITS[digit])
    page.get_by_role("button", name="Predict", exact=True).first.click()
    assert browser.metric_value(page, "Prediction") == str(digit)
    return page


def open_history(page: Any) -> None:
    page.get_by_role("radio", name="History").click()
    page.wait_for_url("**/history", timeout=15_000)


def test_two_visitors_each_see_only_their_own_rows_and_the_operator_sees_all(
    chromium: Any, app_url: str, app_db: str
) -> None:
    one, seven = visitor_draws(chromium, app_url, 1), visitor_draws(chromium, app_url, 7)
    for page in (one, seven):
        open_history(page)
        page.get_by_text("Your predictions: 1").wait_for(timeout=15_000)
        page.get_by_text("Page 1: 1 rows").wait_for(timeout=15_000)
        assert page.get_by_role("link", name="Download CSV").count() == 0, "no export for a visitor"
    assert pg.count_rows(app_db) == 2
    cookies = [{c["name"]: c["value"] for c in p.context.cookies()} for p in (one, seven)]
    assert cookies[0]["mnist_visitor"] != cookies[1]["mnist_visitor"], "each browser has an id of its own"
    one.get_by_label("Operator password").fill(PASSWORD)
    one.get_by_role("button", name="Sign in").click()
    one.get_by_text("All predictions: 2").wait_for(timeout=15_000)
    one.get_by_text("Page 1: 2 rows").wait_for(timeout=15_000)
    assert seven.get_by_text("Your predictions: 1").count() == 1, "the other browser is still a visitor"
    link = one.get_by_role("link", name="Download CSV").get_attribute("href")
    assert link and PASSWORD not in (one.content() + link), "nothing secret in the page"
    download = one.context.request.get(f"{app_url}/{link.lstrip('/')}")
    assert download.status == 200 and len(download.text().strip().splitlines()) == 1 + 2
    assert one.context.request.get(f"{app_url}/{link.lstrip('/')}").status == 401, "a link opens one download"
    one.get_by_role("button", name="Sign out").click()
    one.get_by_text("Your predictions: 1").wait_for(timeout=15_000)
    for page in (one, seven):
        page.context.close()


def test_the_export_wants_the_operator(app_url: str, app_db: str) -> None:
    url = f"{app_url}/export/predictions.csv"
    status, headers, body = fetch(url)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic") and not body.startswith(b"id,")
    assert "error" in json.loads(body)
    status, _, body = fetch(url, "operator", PASSWORD)
    assert status == 200 and len(body.decode().strip().splitlines()) == 1 + pg.count_rows(app_db)
    status, _, body = fetch(url + "?digit=12", "operator", PASSWORD)
    assert status == 400 and json.loads(body) == {"error": "digit must be one of 0-9."}


def test_wrong_passwords_are_throttled_and_none_is_let_in(app_url: str) -> None:
    url = f"{app_url}/export/predictions.csv"
    codes = [fetch(url, "operator", f"guess number {n}")[0] for n in range(12)]
    assert codes[:ATTEMPTS] == [401] * ATTEMPTS and codes[ATTEMPTS:] == [429] * (12 - ATTEMPTS), codes
    status, headers, body = fetch(url, "operator", PASSWORD)
    assert (
        status == 429 and int(headers["Retry-After"]) > 0 and not body.startswith(b"id,")
    ), "not even the right one, for now"


def test_the_proxy_sends_security_headers_and_no_server_header(tmp_path: Path, admin_dsn: str) -> None:
    if replicas.caddy_path() is None:
        pytest.skip("caddy is needed (apt-get install caddy)")
    dsn = pg.create_database(admin_dsn, prefix="mnist_headers")
    try:
        with replicas.Cluster(1, {"DATABASE_URL": dsn, "MODEL_PATH": "", "OPERATOR_PASSWORD": ""}, tmp_path) as proxy:
            status, headers, _ = fetch(proxy.url + "/")
            assert status == 200
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
            assert (
                headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            )
            assert "Server" not in headers, headers.get("Server")
            assert "Strict-Transport-Security" not in headers, "HSTS only over HTTPS"
            (visitor,) = [c for c in headers.get_all("Set-Cookie") if c.startswith("mnist_visitor=")]
            assert "HttpOnly" in visitor and "SameSite=Lax" in visitor
            status, headers, body = fetch(proxy.url + "/export/predictions.csv")
            assert status == 404 and "Server" not in headers, "no password set: no export at all"
            assert "OPERATOR_PASSWORD" in json.loads(body)["error"]
    finally:
        pg.drop_database(admin_dsn, dsn)
