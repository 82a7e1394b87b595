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


def log_reading(
    database: Database,
    checkpoint: Checkpoint,
    answer: NumberReading | Prediction,
    inference_ms: float | None,
    source: str,
    visitor: str | None = None,
    request_id: str | None = None,
) -> int:
    """Log the answer shown (or sent) now and count it; returns the row id (negative while spooled). One digit's row
    as always, or a number's row with its parts. Waits at most DB_WRITE_TIMEOUT (~1 s), then the write is kept in the
    spool; SpoolFull when that is at its cap."""
    fields = row_fields(checkpoint, answer)
    with metrics.timed_write():
        row_id = database.log_prediction(
            **fields,
            model_version=checkpoint.version,
            inference_ms=inference_ms,
            visitor=visitor,
            source=source,
            request_id=request_id,
        )
    metrics.answered(source, fields["is_digit"] is not False, inference_ms)  # counted once kept: SpoolFull refuses
    return row_id


def row_fields(checkpoint: Checkpoint, answer: NumberReading | Prediction) -> dict[str, Any]:
    """The row's answer as shown: a digit's prediction (a model without "not a digit" logs NULL for it, not a
    made-up verdict), or a number's (its first digit, the chance every digit is right, the parts' inputs side by
    side, whether it read as a number, and each part)."""
    if isinstance(answer, Prediction) or answer.is_single:
        prediction = answer if isinstance(answer, Prediction) else answer.parts[0]
        knows = knows_not_digit(checkpoint.model)
        return {
            "predicted_digit": prediction.digit,
            "confidence": prediction.confidence,
            "probabilities": prediction.probabilities,
            "image_png": prediction.png,
            "is_digit": prediction.is_digit if knows else None,
            "not_digit_score": prediction.not_digit_score if knows else None,
        }
    return {
        "predicted_digit": answer.parts[0].digit,
        "confidence": answer.confidence,
        "image_png": answer.png,
        "is_digit": answer.is_number,
        "not_digit_score": max(part.not_digit_score for part in answer.parts),
        "digits": number_parts(answer),
    }


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
