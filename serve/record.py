"""One prediction as every door logs it: the page's Draw and Upload, and the HTTP API, write the same row (spool
included) and count it in the metrics the same way.

    python -c "from serve import record; help(record.log_prediction)"
"""

from __future__ import annotations

from inference.network import Checkpoint, knows_not_digit
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
