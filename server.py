"""The HTTP entry point: the Streamlit page (app.py), the prediction API (serve/api.py), the operator's streamed CSV
export and Prometheus metrics, and the visitor cookie.

    streamlit run server.py          # what `make run` and the Docker image start
    curl --data-binary @seven.png http://localhost:8501/api/predict
    curl -u operator:$OPERATOR_PASSWORD http://localhost:8501/metrics
    curl http://localhost:8501/readyz      # 200 when the model and the database are ready, else 503 and why
    curl -u operator:$OPERATOR_PASSWORD 'http://localhost:8501/export/predictions.csv?digit=7&correct=false' > x.csv

The export is the operator's: HTTP Basic with OPERATOR_PASSWORD, or the one-use link a signed-in History page
shows; anyone else gets 401 and no rows, a client that keeps guessing gets 429, and with no password set there is
no export at all (404). It streams from a server-side cursor (db.Database.export_csv), a few thousand rows at a
time, so a year of predictions downloads in constant memory; at most EXPORT_CONCURRENCY run at once. Query
parameters are History's filters: `digit` (0-9), `correct` and `not_digit` (true/false).

Every page load without a visitor cookie gets one (access/clients.py): the anonymous id History shows a browser
its own predictions by.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import db
import utils
from access import clients, operator
from access.limits import Slots, retry_after
from serve import api, health, metrics, resources
from serve.access_log import AccessLog
from serve.api import client_of, error
from config.settings import SettingsError, check, settings

APP = Path(__file__).resolve().parent / "app.py"
EXPORT_ROUTE = "/export/predictions.csv"
_database: db.Database | None = None
_database_lock = threading.Lock()


@functools.cache
def export_slots() -> Slots:
    """EXPORT_CONCURRENCY downloads at once, made at first use (after `check_settings`)."""
    return Slots(settings().export_concurrency)


def database() -> db.Database:
    """One handle for the exports (its own connection per download, no pool, and it never touches the spool:
    the page's handle in app.py owns that)."""
    global _database
    with _database_lock:
        if _database is None:
            _database = db.Database(pool_size=1)
        return _database


def flag(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false.")


def digit(request: Request) -> int | None:
    value = request.query_params.get("digit")
    if value is None or value == "":
        return None
    if value not in {str(d) for d in range(10)}:
        raise ValueError("digit must be one of 0-9.")
    return int(value)


def refused(request: Request, what: str = "The export", allow_link: bool = True) -> Response | None:
    """None when the request is the operator's; else the response that says why not (401, 404 or 429). With no
    OPERATOR_PASSWORD there is no export (404); `allow_link`: History's one-use export link counts."""
    expected = operator.password()
    if expected is None:
        return error(404, f"{what} needs OPERATOR_PASSWORD, which the operator has not set.")
    client = client_of(request)
    device = clients.cookie_value(request.headers.get("cookie"), clients.VISITOR_COOKIE)
    device = device if clients.valid_visitor_id(device) else None
    wait = operator.throttle().wait(client, device)
    if wait > 0:
        return error(429, "Too many wrong passwords: try again later.", {"Retry-After": retry_after(wait)})
    if allow_link and operator.export_links.spend(request.query_params.get("link")):
        return None
    given = operator.basic_credentials(request.headers.get("authorization"))
    if given is not None:
        right = operator.is_password(given[1], expected) & operator.is_password(given[0], operator.USER)
        if right:
            operator.throttle().succeeded(client, device)
            return None
        operator.throttle().failed(client, device)
    challenge = {"WWW-Authenticate": 'Basic realm="MNIST operator", charset="UTF-8"'}
    return error(401, f"{what} is the operator's: sign in on History, or use HTTP Basic.", challenge)


async def readyz(request: Request) -> Response:
    """GET /readyz: 200 when this process can serve a user (the model loaded, the database ready), else 503 with
    the part that failed (serve/health.py)."""
    ready, checks = await run_in_threadpool(health.readiness)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def prometheus_metrics(request: Request) -> Response:
    """GET /metrics: the operator's (HTTP Basic) when OPERATOR_PASSWORD is set, open on a box without one; the
    public proxy never routes it (Caddyfile)."""
    if operator.password() is not None:
        denied = refused(request, "/metrics", allow_link=False)
        if denied is not None:
            return denied
    try:
        version = (await run_in_threadpool(resources.checkpoint)).version
    except utils.ModelLoadError:
        version = None
    body = await run_in_threadpool(metrics.render, version)
    return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)


async def export_predictions(request: Request) -> Response:
    denied = refused(request)
    if denied is not None:
        return denied
    try:
        wanted, correct, not_digit = digit(request), flag(request, "correct"), flag(request, "not_digit")
    except ValueError as exc:
        return error(400, str(exc))
    if not export_slots().take():
        return error(429, "Other exports are running: try again in a moment.", {"Retry-After": "5"})
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        chunks = database().export_csv(wanted, correct, not_digit)
        # Connect and run the query now, off the event loop: an outage is a clear 503, not a broken download.
        first = await run_in_threadpool(next, chunks)
    except db.DatabaseUnavailable:
        export_slots().give_back()
        return error(503, "The database is unreachable: try again later.")

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from chunks
        finally:  # also when the client goes away mid-download (the generator is closed)
            export_slots().give_back()

    return StreamingResponse(
        body(),  # a sync iterator: Starlette runs it on a worker thread, so the event loop never waits on PostgreSQL
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="predictions-{stamp}.csv"'},
    )


PAGE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # no other site may frame the page (feedback labels train the model)
    (b"content-security-policy", b"frame-ancestors 'none'"),
]
PAGE_HEADER_NAMES = {name for name, _ in PAGE_HEADERS}


class PageGuard:
    """ASGI middleware: every answer says nosniff and refuses framing (Caddy says so too, for what it serves), and
    a page load from a browser without a (well-formed) visitor cookie gets a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        cookie: bytes | None = None
        has_id = clients.valid_visitor_id(clients.cookie_value(headers.get("cookie"), clients.VISITOR_COOKIE))
        if scope.get("method") == "GET" and not has_id:
            secure = scope.get("scheme") == "https" or headers.get("x-forwarded-proto") == "https"
            cookie = clients.visitor_cookie(clients.new_visitor_id(), secure).encode("latin-1")

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent = [(k, v) for k, v in message.get("headers", []) if k.lower() not in PAGE_HEADER_NAMES]
                content_type = dict(sent).get(b"content-type", b"")
                extra = [(b"set-cookie", cookie)] if cookie and content_type.startswith(b"text/html") else []
                message = {**message, "headers": [*sent, *PAGE_HEADERS, *extra]}  # the cookie on the page only
            await send(message)

        await self.app(scope, receive, send_guarded)


def no_external_ip_lookup() -> None:
    """Streamlit checks a websocket's foreign Origin against this machine's external IP, which it looks up with a
    blocking HTTP request on the event loop (checkip.amazonaws.com), retried after every failure: on a server whose
    DNS or outbound traffic hangs, one foreign-Origin handshake froze every user. The page is never reached by its
    raw IP here (Caddy serves the domain), so the lookup is answered in advance: loopback, always refused by nobody
    else's origin. docs/upstream/streamlit-websocket-origin.md is the upstream report."""
    from streamlit import net_util

    if hasattr(net_util, "_external_ip"):
        net_util._external_ip = "127.0.0.1"


def check_settings() -> None:
    """Refuse to start on settings that cannot work (a malformed number, a short operator password, a name in
    `.env` nothing reads), with the variable and the reason, never a traceback."""
    try:
        check()
    except SettingsError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


check_settings()
no_external_ip_lookup()
app = st.App(
    str(APP),
    routes=[
        Route(EXPORT_ROUTE, export_predictions),
        Route("/api/predict", api.predict, methods=["POST"]),
        Route("/api/predictions/{request_id}/label", api.label, methods=["POST"]),
        Route("/metrics", prometheus_metrics),
        Route("/readyz", readyz),
    ],
    middleware=[Middleware(AccessLog), Middleware(PageGuard)],
)
