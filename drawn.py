"""Canvas-like digits made from MNIST test images: how a 280x280 canvas holds a digit a person drew.

Each digit is cropped, scaled to a random height (small to nearly full canvas), hardened into solid strokes (the
canvas pen has no pressure grey), made thicker or thinner like a pen-width slider, and placed anywhere on the canvas.
Seeded, so the set is the same on every run.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

CANVAS = 280


def upscale_digit(digit: np.ndarray, height: int) -> np.ndarray:
    """Crop the ink of a (28, 28) float digit and scale it to `height` pixels tall (aspect kept), float [0, 1]."""
    rows = np.flatnonzero(digit.max(axis=1) > 0.1)
    cols = np.flatnonzero(digit.max(axis=0) > 0.1)
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    big = Image.fromarray((crop * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(big, dtype=np.float32) / 255.0


def canvas_drawing(digit: np.ndarray, rng: np.random.Generator, transparent: bool = False) -> np.ndarray:
    """(280, 280, 4) uint8 RGBA: white solid strokes on black (or on transparent, strokes in alpha)."""
    height = int(rng.integers(70, 250))
    big = upscale_digit(digit, height)
    if big.shape[1] > CANVAS - 4:  # very wide digits: shrink to fit
        big = upscale_digit(digit, int(height * (CANVAS - 4) / big.shape[1]))
    strokes = Image.fromarray(((big > 0.45) * 255).astype(np.uint8))  # solid pen, no grey
    pen = int(rng.choice([-1, 0, 0, 1, 2]))  # thinner, as drawn, thicker
    if pen > 0:
        strokes = strokes.filter(ImageFilter.MaxFilter(2 * pen * max(1, height // 100) + 1))
    elif pen < 0 and height > 120:
        strokes = strokes.filter(ImageFilter.MinFilter(3))
    ink = np.asarray(strokes, dtype=np.uint8)
    h, w = ink.shape
    top = int(rng.integers(0, CANVAS - h + 1))
    left = int(rng.integers(0, CANVAS - w + 1))
    layer = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    layer[top : top + h, left : left + w] = ink
    rgba = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)
    if transparent:
        rgba[..., :3] = 255
        rgba[..., 3] = layer
    else:
        rgba[..., :3] = layer[..., None]
        rgba[..., 3] = 255
    return rgba
