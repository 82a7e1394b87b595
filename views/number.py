"""A number's answer on the Draw and Upload pages: "Number: 2026", the drawing with each digit's box and its
confidence under it, and the feedback (the number typed whole, or one digit fixed at a time).

    make run      # then write two or more digits side by side on the Draw page, and press Predict

app.py reads the drawing (inference/number.py), logs the row and calls `number_answer` for a reading of several
parts; a single digit keeps the single digit's answer and panel. Layout and plain functions only.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from inference.number import NumberReading
from inference.predict import format_confidence
from inference.preprocess import read_ink
from storage.database import Database
from views import answer

COMPONENTS_DIR = Path(__file__).resolve().parent.parent / "components"
PICTURE_HEIGHT = 110  # the annotated drawing's ink height in pixels (shown at about 2/3 of that: sharp on phones)
CAPTION_HEIGHT = 24  # room under the boxes for each digit's confidence
BOX_COLOUR = (255, 75, 75)  # Streamlit's primary red: seen on the black drawing in either theme

# Data in: {image, shown, number, parts: [{digit, confidence}], label}. One trigger out, `number`: the number the user
# says they wrote, as text (1-8 digits), validated again on the server before it is stored.
number_panel = st.components.v2.component(
    "mnist_number_panel",
    css=(COMPONENTS_DIR / "number_panel.css").read_text(),
    js=(COMPONENTS_DIR / "number_panel.js").read_text(),
)


def annotated_drawing(image_data: np.ndarray | Image.Image, reading: NumberReading) -> bytes:
    """The drawing's ink around the digits (light on dark, whatever the paper), PICTURE_HEIGHT tall, each part boxed
    and its digit and confidence written under it: a PNG."""
    ink = read_ink(image_data).level
    factor = ink.shape[1] / (image_data.width if isinstance(image_data, Image.Image) else image_data.shape[1])
    boxes = [[v * factor for v in box] for box in reading.boxes]  # the drawing's pixels -> the ink map's
    pad = 0.15 * max(bottom - top for _, top, _, bottom in boxes)
    left, top = max(0, min(b[0] for b in boxes) - pad), max(0, min(b[1] for b in boxes) - pad)
    right, bottom = min(ink.shape[1], max(b[2] for b in boxes) + pad), min(ink.shape[0], max(b[3] for b in boxes) + pad)
    scale = PICTURE_HEIGHT / max(1.0, bottom - top)
    width = max(1, round((right - left) * scale))
    crop = ink[int(top) : int(np.ceil(bottom)), int(left) : int(np.ceil(right))]
    picture = Image.new("RGB", (width, PICTURE_HEIGHT + CAPTION_HEIGHT))
    picture.paste(
        Image.fromarray((crop * 255).astype(np.uint8), mode="L").resize((width, PICTURE_HEIGHT)).convert("RGB")
    )
    pen = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=17)
    for part, box in zip(reading.parts, boxes):
        x0, y0, x1, y1 = (
            (box[0] - left) * scale,
            (box[1] - top) * scale,
            (box[2] - left) * scale,
            (box[3] - top) * scale,
        )
        pen.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=3)
        # The part's chance of being this digit among all eleven answers (as the number's confidence counts it), in
        # whole percents rounded down (never a 100% short of certainty), centred under the box: they fit a narrow 1.
        said = f"{int(part.confidence * (1 - part.not_digit_score) * 100)}%" if part.is_digit else "?"
        pen.text(((x0 + x1) / 2, PICTURE_HEIGHT + 2), said, fill=(255, 255, 255), font=font, anchor="ma")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def answer_text(reading: NumberReading) -> str:
    """The answer as the metric says it: "Number: 2026", or why it is not one."""
    return f"Number: {reading.number}" if reading.number is not None else "Not a number"


def number_answer(result: dict[str, Any], database: Database, slot: str, counted: Callable[[], None]) -> None:
    """The number's answer, its panel and the feedback's outcome, for the logged result kept under `slot`."""
    reading: NumberReading = result["reading"]
    with st.container(key="number-answer"):  # page.css: a sentence-sized value that wraps, never cut short
        st.metric("Prediction", answer_text(reading))
    if reading.problem:
        st.caption(reading.problem)
    number_panel(
        data={
            "image": "data:image/png;base64," + base64.b64encode(result["picture"]).decode("ascii"),
            "shown": answer_text(reading),
            "number": reading.number,
            "parts": [{"digit": p.digit, "confidence": format_confidence(p.confidence)} for p in reading.parts],
            "label": result["label"],
        },
        key=f"{slot}-number-panel",
        on_number_change=lambda: answer.save_feedback(database, slot, f"{slot}-number-panel", "number", counted),
    )
    if result.get("label_error"):
        st.error(result.pop("label_error"))
    elif result["label"] is not None:
        verdict = "correct" if result["label"] == reading.number else f"wrong (read {reading.number or 'no number'})"
        st.success(f"Thanks! Saved **{result['label']}** for prediction #{result['id']}: {verdict}.")
