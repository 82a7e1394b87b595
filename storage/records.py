"""The values a prediction row and a label carry, each checked before it is written (a clear ValueError, never a
database error), and the records the spool and the writes carry them in.

    python -c "from storage.records import label_record; print(label_record(7))"
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg2
import psycopg2.extras

from storage.schema import (
    LABEL_BY_ID_SQL,
    LABEL_BY_REQUEST_SQL,
    MAX_NUMBER_DIGITS,
    NOT_A_DIGIT,
    NUM_CLASSES,
    SOURCES,
    UnknownPrediction,
)

# ----------------------------------------------------------------------------------------------------------------
# Validation (a clear ValueError before anything reaches the database)


def check_digit(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be a whole number 0-9, got {value!r}.")
    number = int(value)
    if not 0 <= number < NUM_CLASSES:
        raise ValueError(f"{name} must be between 0 and 9, got {number}.")
    return number


def check_probability(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}.") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}.")
    return number


def check_milliseconds(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"inference_ms must be a number of milliseconds, got {value!r}.") from None
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"inference_ms must be a finite, non-negative number, got {value!r}.")
    return number


def check_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}.")
    if "\x00" in value:
        raise ValueError(f"{name} cannot contain a NUL character (PostgreSQL text does not store it).")
    return value


def check_visitor(value: Any) -> str | None:
    """A visitor id: None, or the browser's token (a few dozen URL-safe characters)."""
    text = check_text("visitor", value)
    if text is not None and not (0 < len(text) <= 64 and text.replace("-", "").replace("_", "").isalnum()):
        raise ValueError("visitor must be the browser's id (1-64 letters, digits, '-' or '_').")
    return text


def prediction_record(
    predicted_digit: Any,
    confidence: Any,
    probabilities: Sequence[float] | None,
    image_png: Any,
    model_version: Any,
    inference_ms: Any,
    is_digit: Any,
    not_digit_score: Any,
    visitor: Any,
    source: Any = None,
    request_id: str | None = None,
    digits: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One prediction as the spool and the insert carry it, every value checked; its time is now (the moment the
    answer is shown, however late the write lands)."""
    if is_digit is not None and not isinstance(is_digit, bool):
        raise ValueError(f"is_digit must be True, False or None, got {is_digit!r}.")
    if probabilities is not None:
        probabilities = [check_probability("each probability", p) for p in probabilities]
        if len(probabilities) != NUM_CLASSES:
            raise ValueError(f"probabilities must hold {NUM_CLASSES} values, got {len(probabilities)}.")
    if image_png is not None and not isinstance(image_png, (bytes, bytearray, memoryview)):
        raise ValueError(f"image_png must be bytes, got {type(image_png).__name__}.")
    return {
        "op": "insert",
        "request_id": str(uuid.uuid4()) if request_id is None else check_request_id(request_id),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "predicted_digit": check_digit("predicted_digit", predicted_digit),
        "confidence": check_probability("confidence", confidence),
        "probabilities": probabilities,
        "image": base64.b64encode(bytes(image_png)).decode("ascii") if image_png is not None else None,
        "model_version": check_text("model_version", model_version),
        "inference_ms": check_milliseconds(inference_ms),
        "true_label": None,
        "is_digit": is_digit,
        "not_digit_score": None if not_digit_score is None else check_probability("not_digit_score", not_digit_score),
        "visitor": check_visitor(visitor),
        "source": check_source(source),
        "digits": None if digits is None else check_digits(digits),
    }


def insert_params(record: dict[str, Any]) -> tuple[Any, ...]:
    """INSERT_SQL's parameters for a prediction record (fresh, or replayed from a spool of any age)."""
    image = base64.b64decode(record["image"]) if record.get("image") is not None else None
    return (
        record["created_at"],
        record["predicted_digit"],
        record["confidence"],
        record["probabilities"],
        psycopg2.Binary(image) if image is not None else None,
        record["model_version"],
        record["request_id"],
        record.get("true_label"),
        record.get("inference_ms"),  # spools from before these columns have none
        record.get("is_digit"),
        record.get("not_digit_score"),
        record.get("visitor"),
        record.get("source"),
        psycopg2.extras.Json(record["digits"]) if record.get("digits") is not None else None,
    )


def label_statement(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The UPDATE and its parameters for a label record; the row is named by request id when it has one."""
    by_request = bool(record.get("request_id"))
    return LABEL_BY_REQUEST_SQL if by_request else LABEL_BY_ID_SQL, {
        "label": record["true_label"],
        "not_digit": bool(record.get("not_digit")),
        "number": record.get("true_number"),  # spools from before numbers have none
        # Spools written before labels carried their time are replayed at the replay's time.
        "at": record.get("labelled_at") or dt.datetime.now(dt.timezone.utc).isoformat(),
        "key": record["request_id"] if by_request else record["id"],
        "by": record.get("labelled_by"),
    }


def label_record(true_label: Any, labelled_by: str | None = None, number: Any = None) -> dict[str, Any]:
    """A user's answer as the spool and the update carry it (the row it names is added by the caller): a digit
    0-9, `NOT_A_DIGIT` as the button says it (any case), or None to clear it; its time is now; `labelled_by`: who
    gave it (a visitor id, or the API client's hashed address); `number`: instead, the number a number's drawing
    holds (text of 1-8 digits)."""
    not_digit = isinstance(true_label, str) and true_label.strip().lower() == NOT_A_DIGIT
    if number is not None:  # a number's correction: the digits the user wrote, typed or fixed one at a time
        number, not_digit, true_label = check_number(number), False, None
    return {
        "op": "label",
        "id": None,
        "true_label": None if not_digit else check_digit("true_label", true_label, allow_none=True),
        "true_number": number,
        "not_digit": not_digit,
        "request_id": None,
        "labelled_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "labelled_by": check_text("labelled_by", labelled_by),
    }


def check_number(value: Any) -> str:
    """A number the user says they wrote: 1 to MAX_NUMBER_DIGITS digits, as text (spaces around it ignored)."""
    if not isinstance(value, str):
        raise ValueError(f"A number must be text of 1 to {MAX_NUMBER_DIGITS} digits, got {value!r}.")
    text = value.strip()
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= MAX_NUMBER_DIGITS):
        raise ValueError(f"A number must be 1 to {MAX_NUMBER_DIGITS} digits 0-9, got {value[:20]!r}.")
    return text


def check_digits(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A number's parts as the row keeps them, each checked (serve/record.py builds them from a reading)."""
    if not 2 <= len(parts) <= MAX_NUMBER_DIGITS:
        raise ValueError(f"A number has 2 to {MAX_NUMBER_DIGITS} parts, got {len(parts)}.")
    checked = []
    for part in parts:
        box = [int(v) for v in part["box"]]
        if len(box) != 4:
            raise ValueError(f"A part's box is [left, top, right, bottom], got {part['box']!r}.")
        checked.append(
            {
                "digit": check_digit("a part's digit", part["digit"]),
                "confidence": check_probability("a part's confidence", part["confidence"]),
                "probabilities": [check_probability("each probability", p) for p in part["probabilities"]],
                "is_digit": bool(part["is_digit"]),
                "not_digit_score": check_probability("a part's not_digit_score", part["not_digit_score"]),
                "box": box,
                "image": base64.b64encode(bytes(part["image"])).decode("ascii"),
            }
        )
    return checked


def check_source(value: Any) -> str | None:
    if value is not None and value not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {value!r}.")
    return value


def check_request_id(value: Any) -> str:
    """A request id: a UUID, as text in its canonical form."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise UnknownPrediction(f"No prediction with request id {str(value)[:40]!r}.") from None
