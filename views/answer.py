"""An answer on the Draw and Upload pages: what a single digit's result panel shows, the user's feedback as the page
says it back, and the feedback stored on the answer's row (a digit's panel and a number's alike).

    make run      # then draw a digit, press Predict, and answer "Was it right?"

app.py lays out a digit's answer and mounts its panel; a number's answer is views/number.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from inference.labels import NOT_A_DIGIT
from inference.predict import Prediction, format_confidence
from storage.database import Database
from storage.spool import SpoolFull
from views import session
from views.history import thumbnail

# The database away and the spool at SPOOL_MAX_MB: an answer (or a label) that could not be kept is not shown.
SPOOL_FULL = "The database is unreachable and this server cannot keep more until it is back: nothing was saved."


def feedback_verdict(prediction: Prediction, label: int | str) -> tuple[str, str]:
    """The user's answer as said back ("true label **7**", "**not a digit**"), and what it makes of the app's answer
    ("correct", "wrong (predicted 4)", "wrong (predicted not a digit)")."""
    shown = str(prediction.digit) if prediction.is_digit else NOT_A_DIGIT
    if label == NOT_A_DIGIT:
        given, right = f"**{NOT_A_DIGIT}**", not prediction.is_digit
    else:
        given, right = f"true label **{label}**", prediction.is_digit and label == prediction.digit
    return given, "correct" if right else f"wrong (predicted {shown})"


def panel_data(result: dict[str, Any]) -> dict[str, Any]:
    """What the result panel shows for a result kept in the session."""
    prediction: Prediction = result["prediction"]
    return {
        "digit": prediction.digit,
        "confidence": format_confidence(prediction.confidence),
        "probabilities": [round(p, 6) for p in prediction.probabilities],
        "image": thumbnail(result["png"]),
        "label": result["label"],
        "is_digit": prediction.is_digit,
        "not_digit_score": format_confidence(prediction.not_digit_score),
        "not_digit": NOT_A_DIGIT,  # the value the panel sends for "Not a digit"
    }


def save_feedback(database: Database, slot: str, panel: str, trigger: str, counted: Callable[[], None]) -> None:
    """A panel's callback (it runs before the rerun, so the panel then shows what was saved): the value it sent as
    `trigger` stored on the row of the result kept under `slot`, validated there. A digit or "not a digit" (trigger
    "label"), or the number the user wrote (trigger "number")."""
    result = st.session_state.get(slot)
    value = st.session_state[panel][trigger]
    if not result or result["id"] is None or value is None:
        return
    label, number = (None, value) if trigger == "number" else (value, None)
    try:
        stored = database.set_true_label(database.resolve(result["id"]), label, session.visitor_id(), number=number)
        result["label"] = value.strip() if number is not None else value
        result["label_spooled"] = not stored
        counted()
    except ValueError as exc:
        result["label_error"] = f"Could not save the {trigger}: {exc}"
    except SpoolFull:
        result["label_error"] = f"Could not save the {trigger}: {SPOOL_FULL}"
