"""A single digit's answer on the Draw and Upload pages: what the result panel shows, and the user's feedback as the
page says it back.

    make run      # then draw a digit, press Predict, and answer "Was it right?"

Plain functions (app.py lays out the answer and mounts the panel); a number's answer is views/number.py.
"""

from __future__ import annotations

from typing import Any

from inference.labels import NOT_A_DIGIT
from inference.predict import Prediction, format_confidence
from views.history import thumbnail


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
