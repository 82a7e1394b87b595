"""Numbers drawn as people write them: MNIST digits re-drawn as canvas strokes, side by side with small gaps.

    python -c "import numpy as np; from training.synthetic.numbers import number_drawing as n; \
               print(n([np.eye(28)] * 3, np.random.default_rng(0)).shape)"

What `make bench-numbers` and the tests read numbers from (inference.number reads them): each digit is upscaled to
the number's height (a little jitter in size and height on the line, as a hand gives), drawn with the canvas's pen
as drawn.canvas_drawing draws a single digit, and
set left to right with a gap of `gap` times the height (0 or less: the digits touch or overlap).
"""

from __future__ import annotations

import numpy as np

from training.synthetic.drawn import pen_ink

SMALL_GAPS = (0.08, 0.3)  # a gap between digits, as a fraction of their height: "a little space"
MARGIN = 20  # pixels of empty canvas around the number


def number_drawing(
    digits: list[np.ndarray], rng: np.random.Generator, height: int | None = None, gap: float | None = None
) -> np.ndarray:
    """(H, W) uint8, white strokes on black: `digits` (each (28, 28) float in [0, 1]) written left to right."""
    height = height or int(rng.integers(60, 140))
    gap = float(rng.uniform(*SMALL_GAPS)) if gap is None else gap
    glyphs = [pen_ink(d, max(12, round(height * rng.uniform(0.85, 1.1))), rng) for d in digits]
    lifts = [int(rng.integers(0, max(1, height // 10))) for _ in glyphs]  # each a little off the line
    canvas_h = max(g.shape[0] + lift for g, lift in zip(glyphs, lifts)) + 2 * MARGIN
    step = round(gap * height)
    width = sum(g.shape[1] for g in glyphs) + step * (len(glyphs) - 1) + 2 * MARGIN
    canvas = np.zeros((canvas_h, max(width, 2 * MARGIN + 1)), dtype=np.uint8)
    x = MARGIN
    for glyph, lift in zip(glyphs, lifts):
        h, w = glyph.shape
        region = canvas[MARGIN + lift : MARGIN + lift + h, x : x + w]
        np.maximum(region, glyph[: region.shape[0], : region.shape[1]], out=region)
        x += w + step
    return canvas
