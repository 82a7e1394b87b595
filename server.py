"""The HTTP entry point: the Streamlit page (app.py) plus the one route a page cannot serve, the streamed CSV export.

    streamlit run server.py          # what `make run` and the Docker image start
    curl 'http://localhost:8501/export/predictions.csv?digit=7&correct=false' > wrong-sevens.csv

History's "Download CSV" links here. A Streamlit download button would build the whole file in the server's
memory first; this route streams it from a server-side cursor (db.Database.export_csv), a few thousand rows at a
time, so a year of predictions downloads in constant memory. Query parameters are History's filters: `digit`
(0-9), `correct` and `not_digit` (true/false).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import db

APP = Path(__file__).resolve().parent / "app.py"
EXPORT_ROUTE = "/export/predictions.csv"
_database: db.Database | None = None
_database_lock = threading.Lock()


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
    raise ValueError(f"{name} must be true or false, got {value!r}.")


def digit(request: Request) -> int | None:
    value = request.query_params.get("digit")
    if value is None or value == "":
        return None
    if not value.isdigit() or not 0 <= int(value) <= 9:
        raise ValueError(f"digit must be 0-9, got {value!r}.")
    return int(value)


async def export_predictions(request: Request) -> Response:
    try:
        wanted, correct, not_digit = digit(request), flag(request, "correct"), flag(request, "not_digit")
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        chunks = database().export_csv(wanted, correct, not_digit)
        # Connect and run the query now, off the event loop: an outage is a clear 503, not a broken download.
        first = await run_in_threadpool(next, chunks)
    except db.DatabaseUnavailable as exc:
        return PlainTextResponse(f"The database is unreachable, try again later ({exc}).", status_code=503)

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    return StreamingResponse(
        body(),  # a sync iterator: Starlette runs it on a worker thread, so the event loop never waits on PostgreSQL
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="predictions-{stamp}.csv"'},
    )


app = st.App(str(APP), routes=[Route(EXPORT_ROUTE, export_predictions)])
