"""The access log: one JSON line on stderr per request, the page's and the API's alike, for the operator.

    docker compose logs app | grep '"access"'         # {"access": 1, "method": "POST", "path": "/api/predict", ...}

Each line says the method, the path, the status, the milliseconds until the answer was sent, and the client (as the
limits count it: access/clients.py). Never what identifies or authenticates: no query string (the export's one-use
link travels in it), no headers (passwords, cookies), no body (images), and the API's request id (a handle that
labels a row) replaced by `{request_id}`. A websocket (a page session) is one line when it ends: `WS`, 101 when it
was accepted, and how long it lasted. Docker's json-file driver rotates it (docker-compose.yml: 10 MB x 5).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from access import clients

log = logging.getLogger("mnist.access")
_REQUEST_ID = re.compile(r"^/api/predictions/[^/]+/label$")


def _logger() -> logging.Logger:
    """Its own handler: Streamlit configures its loggers, not this one, and a line must reach stderr once."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def logged_path(path: str) -> str:
    """The path as logged: the label route's request id is a handle on a row, so it is not written down."""
    return "/api/predictions/{request_id}/label" if _REQUEST_ID.match(path) else path


def line(method: str, path: str, status: int, ms: float, client: str) -> str:
    fields: dict[str, Any] = {
        "access": 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": method,
        "path": logged_path(path),
        "status": status,
        "ms": round(ms, 1),
        "client": client,
    }
    return json.dumps(fields, separators=(",", ":"))


class AccessLog:
    """ASGI middleware: a line per request once its answer has started (or per websocket once it closes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 0

        async def send_noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and not status:
                status = 403  # refused before it was accepted
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_noted)
            failed = False
        finally:
            method = scope.get("method", "GET") if scope["type"] == "http" else "WS"
            ms = (time.perf_counter() - started) * 1000
            # No status: the app raised (the server answers 500), or the client left before an answer (499).
            status = status or (500 if failed else 499)
            _logger().info(line(method, scope.get("path", ""), status, ms, clients.client_of_scope(scope)))
