"""One prediction as every door logs it: the page's Draw and Upload, and the HTTP API, write the same row (spool
included) and count it in the metrics the same way. A number (several digits read at once) is one row too.

    python -c "from serve import record; help(record.log_reading)"
"""

from __future__ import annotations

from typing import Any

from inference.network import Checkpoint, knows_not_digit
from inference.number import NumberReading
from inference.predict import Prediction
from serve import metrics
from storage.database import Database


def log_prediction(
    database: Database,
    checkpoint: Checkpoint,
    prediction: Prediction,
    inference_ms: float | None,
    source: str,
    visitor: str | None = None,
    request_id: str | None = None,
) -> int:
    """Log the answer shown (or sent) now and count it; returns the row id (negative while spooled). Waits at most
    DB_WRITE_TIMEOUT (~1 s), then the write is kept in the spool; SpoolFull when that is at its cap."""
    knows = knows_not_digit(checkpoint.model)  # a model without "not a digit" logs NULL, not a made-up verdict
    with metrics.timed_write():
        row_id = database.log_prediction(
            prediction.digit,
            prediction.confidence,
            prediction.probabilities,
            prediction.png,
            checkpoint.version,
            inference_ms,
            prediction.is_digit if knows else None,
            prediction.not_digit_score if knows else None,
            visitor=visitor,
            source=source,
            request_id=request_id,
        )
    metrics.answered(source, prediction.is_digit, inference_ms)  # counted once kept: SpoolFull is a refusal
    return row_id


def log_reading(
    database: Database,
    checkpoint: Checkpoint,
    reading: NumberReading,
    inference_ms: float | None,
    source: str,
    visitor: str | None = None,
    request_id: str | None = None,
) -> int:
    """`log_prediction` for a reading: one digit's row as always, or a number's row with its parts (their digits,
    boxes, confidences and 28x28 inputs); the row's answer is the number as shown."""
    if reading.is_single:
        return log_prediction(database, checkpoint, reading.parts[0], inference_ms, source, visitor, request_id)
    with metrics.timed_write():
        row_id = database.log_prediction(
            reading.parts[0].digit,
            reading.confidence,
            None,
            reading.png,
            checkpoint.version,
            inference_ms,
            reading.is_number,
            max(part.not_digit_score for part in reading.parts),
            visitor=visitor,
            source=source,
            request_id=request_id,
            digits=number_parts(reading),
        )
    metrics.answered(source, reading.is_number, inference_ms)
    return row_id


def part_fields(reading: NumberReading) -> list[dict[str, Any]]:
    """Each part of a number as the API answers it: its digit, confidences and box in the drawing's pixels."""
    return [
        {
            "digit": part.digit,
            "confidence": part.confidence,
            "probabilities": part.probabilities,
            "is_digit": part.is_digit,
            "not_digit_score": part.not_digit_score,
            "box": list(box),
        }
        for part, box in zip(reading.parts, reading.boxes)
    ]


def number_parts(reading: NumberReading) -> list[dict[str, Any]]:
    """A number's parts as its row keeps them (storage/schema.py): the API's fields and each part's 28x28 input."""
    return [{**fields, "image": part.png} for fields, part in zip(part_fields(reading), reading.parts)]
