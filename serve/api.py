"""The HTTP prediction API, served by the Streamlit process beside the page (server.py's routes), with the page's
model and database handle (serve/resources.py).

    curl --data-binary @seven.png -H 'Content-Type: image/png' http://127.0.0.1:8501/api/predict
    curl -H 'Content-Type: application/json' -d '{"label": 7}' \
        http://127.0.0.1:8501/api/predictions/<request_id>/label

POST /api/predict: the body is the image file's bytes (PNG, JPEG, GIF, BMP or WebP; the Upload page's limits). The
answer: {id, request_id, digit, confidence, probabilities, is_digit, not_digit_score, model_version, inference_ms};
the row is logged with source "api" (spooled while the database is away: `id` is then negative). Several digits
side by side are read as a number (inference/number.py): then `number` ("2026", or null when a part is not a digit
or digits touch, `problem` says which), `digits` [{digit, confidence, probabilities, is_digit, not_digit_score,
box: [left, top, right, bottom]}], `confidence` the chance every digit is right, and `digit` null, `is_digit` false
(what a single-digit client made of such an image before). Label a number with {"number": "2026"}. The request id is
the row's key for the label route: whoever holds it may label the row, nobody else can guess it (a UUID4).
Errors are JSON {"error": ...}: 400 empty, unreadable or blank, 413 too large, 415 not one of the formats, 429 over
API_LIMIT_PER_MINUTE per client (predictions and labels each; Retry-After), 503 while the model cannot be loaded or
the images in flight fill IMAGE_MEMORY_MB past IMAGE_WAIT_SECONDS (Retry-After).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from access import clients
from access.limits import RateLimit, per_minute, retry_after
from config.settings import settings
from inference.admission import Busy, admitted
from inference.images import UPLOAD, load_uploaded_image, sniff_format
from inference.network import ModelLoadError
from inference.number import NumberReading, read_number
from inference.preprocess import EmptyDrawingError
from serve import metrics, record, resources
from storage.schema import UnknownPrediction
from storage.spool import SpoolFull

# Said when the database is away and the spool is at its cap (SPOOL_MAX_MB): nothing was kept, so nothing is answered.
SPOOL_FULL = "The database is unreachable and this server's store for waiting writes is full: nothing was saved."
SPOOL_FULL_RETRY = "60"

SOURCE = "api"
LABEL_BODY_BYTES = 1024
# A body over the limit is read on (and thrown away) up to this size, so that the client, still sending, gets
# the 413 rather than a reset connection; a larger one is cut off.
DRAIN_BYTES = 16 * 1024 * 1024


@functools.cache
def api_limit() -> RateLimit:
    """POST /api/predict's limit per client, made at first use (after server.py checked the settings)."""
    return per_minute(settings().api_limit_per_minute)


@functools.cache
def label_limit() -> RateLimit:
    """The label route's limit per client: API_LIMIT_PER_MINUTE as well, counted apart from the predictions (each
    label costs a write, and a spooled one an fsync, so a flood of them is refused, not queued)."""
    return per_minute(settings().api_limit_per_minute)


class BodyTooLarge(Exception):
    pass


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def client_of(request: Request) -> str:
    return clients.client_of_scope(request.scope)


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, never more than `limit` bytes of it held; BodyTooLarge once it is longer."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_BYTES:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise BodyTooLarge
    return b"".join(chunks)


def refused(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    metrics.refused(SOURCE)
    return error(status, message, headers)


async def predict(request: Request) -> Response:
    wait = api_limit().check(client_of(request))
    if wait > 0:
        return refused(429, "Too many predictions from here: try again later.", {"Retry-After": retry_after(wait)})
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # The bytes decide, not the header: `curl --data-binary @seven.png` labels them a form (urlencoded). A multipart
    # form wraps the file in an envelope the decoder cannot read, so it gets a 415 that says what to send instead.
    if media_type.startswith("multipart/"):
        return refused(415, "Send the image file's bytes as the body (curl --data-binary @file), not a form.")
    try:
        body = await bounded_body(request, UPLOAD.max_bytes)
    except BodyTooLarge:
        return refused(413, f"The image is too large; the limit is {UPLOAD.max_bytes / 1e6:.0f} MB.")
    if not body:
        return refused(400, "The body is empty: send the image file's bytes.")
    if sniff_format(body) is None:
        return refused(415, "That is not a PNG, JPEG, GIF, BMP or WebP image.")
    try:
        answer = await run_in_threadpool(answer_image, body)
    except ModelLoadError as exc:
        return error(503, f"The model could not be loaded: {exc}")
    except Busy as exc:
        return refused(503, str(exc), {"Retry-After": str(exc.retry_after)})
    except SpoolFull:
        return refused(503, SPOOL_FULL + " Try again later.", {"Retry-After": SPOOL_FULL_RETRY})
    except EmptyDrawingError:
        return refused(400, "The image is blank: there is no digit to read.")
    except ValueError as exc:  # the decoder's reasons (unreadable, too many pixels), in the user's words
        return refused(400, str(exc))
    return JSONResponse(answer)


def answer_image(body: bytes) -> dict[str, Any]:
    """Decode, classify and log one image (on a worker thread): the API's answer."""
    checkpoint = resources.checkpoint()
    started = time.perf_counter()
    with admitted(body):  # the decode, the model and the answer's images: bounded with every other image request
        reading = read_number(checkpoint.model, load_uploaded_image(body))
    inference_ms = (time.perf_counter() - started) * 1000
    request_id = str(uuid.uuid4())
    row_id = record.log_reading(resources.database(), checkpoint, reading, inference_ms, SOURCE, None, request_id)
    answer = {"id": row_id, "request_id": request_id, **reading_answer(reading)}
    return {**answer, "model_version": checkpoint.version, "inference_ms": round(inference_ms, 3)}


def reading_answer(reading: NumberReading) -> dict[str, Any]:
    """A single digit's fields as they have always been; a number's, with each part's."""
    digits = record.part_fields(reading)
    if reading.is_single:  # the answer one digit has always had: its part's fields, without a box
        return {key: value for key, value in digits[0].items() if key != "box"}
    return {
        "number": reading.number,
        "problem": reading.problem,
        "digits": digits,
        "digit": None,
        "is_digit": False,
        "confidence": reading.confidence,
    }


async def label(request: Request) -> Response:
    """POST /api/predictions/<request_id>/label {"label": 0-9, "not a digit", or null to clear}."""
    request_id = request.path_params["request_id"]
    wait = label_limit().check(client_of(request))
    if wait > 0:
        return error(429, "Too many labels from here: try again later.", {"Retry-After": retry_after(wait)})
    try:
        body = json.loads(await bounded_body(request, LABEL_BODY_BYTES) or b"null")
    except BodyTooLarge:
        return error(413, 'The body is too large: send {"label": ...}.')
    except (ValueError, UnicodeDecodeError):
        return error(400, 'The body is not JSON: send {"label": 0-9 or "not a digit"}.')
    if not isinstance(body, dict) or not ("label" in body or "number" in body):
        return error(400, 'Send {"label": 0-9 or "not a digit"}, or {"number": "2026"} for a number.')
    try:
        who = "api:" + hashlib.sha256(client_of(request).encode()).hexdigest()[:16]  # counted apart, not named
        stored = await run_in_threadpool(
            resources.database().label_request, request_id, body.get("label"), who, body.get("number")
        )
    except UnknownPrediction:
        return error(404, "No prediction with that request id.")
    except SpoolFull:
        return error(503, SPOOL_FULL + " Send the label again later.", {"Retry-After": SPOOL_FULL_RETRY})
    except ValueError as exc:
        return error(400, f'{exc} Send 0-9 or "not a digit", or a number of 1-8 digits as text.')
    metrics.labelled(SOURCE)
    given = {"number": body["number"]} if "number" in body else {"label": body["label"]}
    answer = {"request_id": request_id, **given, "stored": stored}
    return JSONResponse(answer, status_code=200 if stored else 202)
