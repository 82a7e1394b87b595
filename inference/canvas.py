"""The drawing canvas as the page shows it and as training imitates it: one definition for both.

    python -c "from inference.canvas import CANVAS_SIZE, PEN_WIDTHS; print(CANVAS_SIZE, PEN_WIDTHS)"

The page (app.py) offers exactly the pen widths training draws with (training.synthetic.drawn), so no width a
visitor can pick is one the model never saw.
"""

from __future__ import annotations

CANVAS_SIZE = 280  # CSS pixels, square: what the page draws on and what training's drawings are
# The pen-width slider's stops: ~2 px strokes once a full-height digit is scaled into MNIST's 20 px box at 20.
PEN_WIDTHS = (12, 16, 20, 24, 28)
PEN_WIDTH_STEP = PEN_WIDTHS[1] - PEN_WIDTHS[0]
DEFAULT_PEN_WIDTH = 20
