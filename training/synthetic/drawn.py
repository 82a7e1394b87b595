"""Digits as a 280x280 canvas holds them: MNIST test digits re-drawn as canvas strokes, and digits drawn from pen
strokes in handwriting styles that MNIST rarely has.

    python -c "import utils; from training.synthetic.drawn import style_accuracy as acc; \
print(acc(utils.load_model(), 'slashed-zero', 200, seed=1))"

`canvas_drawing`: each MNIST digit is cropped, scaled to a random height (small to nearly full canvas), hardened into
solid strokes (the canvas pen has no pressure grey), made thicker or thinner like a pen-width slider, and placed
anywhere on the canvas. `drawn_digit_accuracy` over 2,000 of them is the drawn-digit check of the promotion gate.
`draw_style`: a digit drawn as polylines with a person's jitter (size, place, slant, pen width, wobble), for the
feedback-retraining drill. Everything is seeded, so each set is the same on every run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from inference.canvas import CANVAS_SIZE, PEN_WIDTHS
from inference.labels import CLASSES
from inference.predict import classify
from inference.preprocess import IMAGE_SIZE, preprocess_image

DRAWN_CHECK_SIZE = 2000
DRAWN_CHECK_SEED = 2024


def upscale_digit(digit: np.ndarray, height: int) -> np.ndarray:
    """Crop the ink of a (28, 28) float digit and scale it to `height` pixels tall (aspect kept), float [0, 1]."""
    rows = np.flatnonzero(digit.max(axis=1) > 0.1)
    cols = np.flatnonzero(digit.max(axis=0) > 0.1)
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    big = Image.fromarray((crop * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(big, dtype=np.float32) / 255.0


def pen_ink(digit: np.ndarray, height: int, rng: np.random.Generator, max_width: int | None = None) -> np.ndarray:
    """(h, w) uint8 solid strokes of a (28, 28) digit `height` tall (narrowed to `max_width`), with the pen thinner,
    as drawn or thicker: how the canvas's pen re-draws an MNIST digit."""
    big = upscale_digit(digit, height)
    if max_width and big.shape[1] > max_width:  # very wide digits: shrink to fit
        big = upscale_digit(digit, int(height * max_width / big.shape[1]))
    strokes = Image.fromarray(((big > 0.45) * 255).astype(np.uint8))  # solid pen, no grey
    pen = int(rng.choice([-1, 0, 0, 1, 2]))  # thinner, as drawn, thicker
    if pen > 0:
        strokes = strokes.filter(ImageFilter.MaxFilter(2 * pen * max(1, height // 100) + 1))
    elif pen < 0 and height > 120:
        strokes = strokes.filter(ImageFilter.MinFilter(3))
    return np.asarray(strokes, dtype=np.uint8)


def canvas_drawing(digit: np.ndarray, rng: np.random.Generator, transparent: bool = False) -> np.ndarray:
    """(280, 280, 4) uint8 RGBA: white solid strokes on black (or on transparent, strokes in alpha)."""
    ink = pen_ink(digit, int(rng.integers(70, 250)), rng, max_width=CANVAS_SIZE - 4)
    h, w = ink.shape
    top = int(rng.integers(0, CANVAS_SIZE - h + 1))
    left = int(rng.integers(0, CANVAS_SIZE - w + 1))
    layer = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    layer[top : top + h, left : left + w] = ink
    rgba = np.zeros((CANVAS_SIZE, CANVAS_SIZE, 4), dtype=np.uint8)
    if transparent:
        rgba[..., :3] = 255
        rgba[..., 3] = layer
    else:
        rgba[..., :3] = layer[..., None]
        rgba[..., 3] = 255
    return rgba


def drawn_digit_accuracy(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    size: int = DRAWN_CHECK_SIZE,
    seed: int = DRAWN_CHECK_SEED,
) -> float:
    """How many of `size` MNIST digits (N, 1, 28, 28), re-drawn on the canvas and read through the app's own
    preprocessing (every fifth on a transparent background, as the canvas can send it), the model accepts as a digit
    and reads right: a digit called "not a digit" counts as wrong."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(labels), size=size, replace=False)
    correct = 0
    for n, i in enumerate(picks):
        drawing = canvas_drawing(images[int(i)].squeeze(0).numpy(), rng, transparent=n % 5 == 0)
        prediction = classify(model, drawing)
        correct += prediction.is_digit and prediction.digit == int(labels[int(i)])
    return correct / size


# ----------------------------------------------------------------------------------------------------------------
# Handwriting styles drawn from strokes (unit coordinates: x to the right, y down, the digit's box is [0, 1]^2)

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, points: int = 16) -> Stroke:
    angles = np.radians(np.linspace(start_deg, end_deg, points))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Each: (the digit it is, its strokes). The shipped model reads the first three mostly wrong (see README).
STYLES: dict[str, tuple[int, list[Stroke]]] = {
    # A zero with a slash through it (programmers, Scandinavia): read as 8.
    "slashed-zero": (0, [arc(0.5, 0.5, 0.4, 0.45, 0, 360, 20), [(1.0, -0.02), (0.0, 1.02)]]),
    # A Z-shaped two with a bar across (German, French school hands): read as 7.
    "crossed-two": (2, [[(0.05, 0.05), (0.95, 0.05), (0.05, 0.98), (0.95, 0.98)], [(0.2, 0.5), (0.8, 0.5)]]),
    # A continental one with a long flag: read as 7.
    "flag-one": (1, [[(0.05, 0.2), (0.6, 0.02), (0.6, 0.98)]]),
    # Styles MNIST has plenty of (the model reads them): a control for the drill.
    "crossed-seven": (7, [[(0.05, 0.05), (0.95, 0.05), (0.4, 0.98)], [(0.3, 0.5), (0.85, 0.5)]]),
    "open-four": (4, [[(0.2, 0.02), (0.1, 0.6), (0.95, 0.6)], [(0.7, 0.2), (0.7, 0.98)]]),
}


def _eight(points: int = 40, turn: float = 0.0) -> Stroke:
    """A figure eight in one stroke, from the top (a vertical lemniscate); `turn` starts it elsewhere on the loop."""
    t = np.linspace(0, 2 * np.pi, points) + turn
    return [(0.5 + 0.45 * math.sin(2 * a), 0.5 - 0.5 * math.cos(a)) for a in t]


# Every digit as people draw it with a pen on the canvas, a few ways each: (strokes, (min, max) width/height).
# Training sees PEN_DIGITS beside MNIST, so "drawn with a round pen" never becomes a sign of "not a digit" (the
# non-digits are drawn with the same pen); the held-out ways only measure. The drill's styles (STYLES) stay out.
PenDigit = tuple[list[Stroke], tuple[float, float]]
PEN_DIGITS: dict[int, list[PenDigit]] = {
    0: [([arc(0.5, 0.5, 0.5, 0.5, -90, 270, 24)], (0.55, 0.85)),
        ([arc(0.5, 0.5, 0.5, 0.5, -60, -420, 26)], (0.5, 0.8))],
    1: [([[(0.5, 0.0), (0.5, 1.0)]], (0.1, 0.3)),
        ([[(0.2, 0.25), (0.6, 0.0), (0.6, 1.0)]], (0.25, 0.4)),
        ([[(0.2, 0.2), (0.55, 0.0), (0.55, 1.0)], [(0.15, 1.0), (0.95, 1.0)]], (0.4, 0.6))],
    2: [([[*arc(0.5, 0.3, 0.45, 0.3, 200, 390, 12), (0.0, 1.0), (1.0, 1.0)]], (0.6, 0.85)),
        ([[(0.05, 0.15), (0.5, 0.0), (0.95, 0.2), (0.9, 0.4), (0.05, 1.0), (1.0, 1.0)]], (0.6, 0.85))],
    3: [([[*arc(0.45, 0.27, 0.45, 0.27, 200, 450, 12), *arc(0.45, 0.73, 0.5, 0.27, 270, 520, 12)]], (0.55, 0.8)),
        ([[(0.05, 0.0), (0.95, 0.0), (0.4, 0.4), *arc(0.45, 0.7, 0.5, 0.3, -90, 160, 12)]], (0.6, 0.8))],
    4: [([[(0.65, 0.0), (0.0, 0.65), (1.0, 0.65)], [(0.7, 0.25), (0.7, 1.0)]], (0.65, 0.9)),
        ([[(0.15, 0.0), (0.05, 0.6), (0.95, 0.6)], [(0.75, 0.05), (0.75, 1.0)]], (0.6, 0.85))],
    5: [([[(0.9, 0.0), (0.15, 0.0), (0.1, 0.45), *arc(0.45, 0.68, 0.45, 0.3, -120, 150, 12)]], (0.6, 0.8)),
        ([[(0.15, 0.0), (0.1, 0.45), *arc(0.45, 0.68, 0.45, 0.3, -120, 150, 12)], [(0.15, 0.0), (0.9, 0.0)]],
         (0.6, 0.8))],
    6: [([[(0.8, 0.02), (0.45, 0.1), (0.15, 0.4), *arc(0.5, 0.7, 0.4, 0.3, 180, -180, 16)]], (0.6, 0.8)),
        ([[(0.7, 0.0), (0.25, 0.45), *arc(0.5, 0.72, 0.4, 0.28, 160, -200, 16)]], (0.55, 0.75))],
    7: [([[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)]], (0.6, 0.85)),
        ([[(0.0, 0.15), (0.05, 0.0), (1.0, 0.0), (0.45, 1.0)]], (0.6, 0.85))],
    8: [([_eight()], (0.55, 0.75)),
        ([arc(0.5, 0.25, 0.35, 0.25, 90, 450, 16), arc(0.5, 0.72, 0.45, 0.28, -90, 270, 18)], (0.55, 0.75))],
    9: [([[*arc(0.45, 0.3, 0.4, 0.3, 0, -360, 18), (0.85, 1.0)]], (0.55, 0.75)),
        ([[*arc(0.45, 0.3, 0.42, 0.3, 10, -350, 18), (0.85, 0.6), (0.7, 0.95), (0.4, 1.0)]], (0.55, 0.75))],
}  # fmt: skip
PEN_DIGITS_HELDOUT: dict[int, list[PenDigit]] = {
    0: [([arc(0.5, 0.5, 0.5, 0.5, 90, 460, 24)], (0.45, 0.7))],
    1: [([[(0.3, 0.15), (0.55, 0.0), (0.5, 1.0)], [(0.2, 1.0), (0.8, 1.0)]], (0.35, 0.55))],
    2: [([[*arc(0.5, 0.3, 0.45, 0.3, 190, 380, 12), (0.05, 0.95), *arc(0.15, 0.9, 0.1, 0.1, 0, 360, 8),
           (1.0, 1.0)]], (0.6, 0.85))],
    3: [([[(0.1, 0.1), (0.5, 0.0), (0.9, 0.2), (0.4, 0.5), (0.95, 0.75), (0.5, 1.0), (0.05, 0.9)]], (0.55, 0.8))],
    4: [([[(0.75, 1.0), (0.75, 0.0), (0.0, 0.7), (1.0, 0.7)]], (0.65, 0.9))],
    5: [([[(0.95, 0.05), (0.5, 0.0), (0.2, 0.02), (0.15, 0.4), *arc(0.5, 0.7, 0.45, 0.3, -130, 160, 12)]],
         (0.6, 0.8))],
    6: [([[(0.75, 0.0), (0.2, 0.5), (0.15, 0.75), *arc(0.5, 0.75, 0.38, 0.25, 180, -180, 16)]], (0.55, 0.75))],
    7: [([[(0.0, 0.05), (1.0, 0.0), (0.7, 0.4), (0.5, 1.0)], [(0.25, 0.5), (0.9, 0.45)]], (0.6, 0.85))],
    8: [([_eight(turn=np.pi)], (0.5, 0.7))],
    9: [([[*arc(0.5, 0.28, 0.45, 0.28, -10, -370, 18), (0.95, 1.0)]], (0.6, 0.8))],
}  # fmt: skip


def pen_digit(digit: int, rng: np.random.Generator, ways: dict[int, list[PenDigit]] = PEN_DIGITS) -> np.ndarray:
    """`digit` drawn one of `ways` with a person's jitter (size, place, slant, pen width, wobble): the canvas's RGBA."""
    strokes, aspect = ways[digit][int(rng.integers(len(ways[digit])))]
    return pen_drawing(strokes, rng, aspect=aspect, height=(90, 250), wobble=0.025, max_slant_deg=12)


def pen_digits(
    count: int, seed: int, ways: dict[int, list[PenDigit]] = PEN_DIGITS
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` pen-drawn digits as the model sees them (through the app's preprocessing): (count, 1, 28, 28) float32
    in [0, 1] and their labels, the ten digits in turn."""
    rng = np.random.default_rng(seed)
    labels = torch.arange(count) % len(CLASSES)
    images = np.zeros((count, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for i, digit in enumerate(labels.tolist()):
        images[i, 0] = preprocess_image(pen_digit(digit, rng, ways))
    return torch.from_numpy(images), labels


def pen_drawing(
    strokes: list[Stroke],
    rng: np.random.Generator,
    aspect: tuple[float, float] = (0.6, 0.8),
    height: tuple[float, float] = (110, 240),
    wobble: float = 0.03,
    max_slant_deg: float = 12.0,
    pen_widths: tuple[int, ...] = PEN_WIDTHS,
    image: Image.Image | None = None,
) -> np.ndarray:
    """`strokes` (unit box) drawn as a person draws on the canvas: a random size and place, a slant, a pen width and
    a wobble on every point. (280, 280, 4) uint8 RGBA, white strokes on black; `image` adds to an existing drawing."""
    canvas = image if image is not None else Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    pen = ImageDraw.Draw(canvas)
    tall = rng.uniform(*height)
    ratio = rng.uniform(*aspect)
    tall = min(tall, (CANVAS_SIZE - 16) / max(ratio, 1e-6))  # wide shapes: keep the whole box on the canvas
    width = tall * ratio
    # max(): a box clamped to the canvas above can exceed it by a rounding error
    left, top = rng.uniform(8, max(8.0, CANVAS_SIZE - 8 - width)), rng.uniform(8, max(8.0, CANVAS_SIZE - 8 - tall))
    slant = math.radians(rng.uniform(-max_slant_deg, max_slant_deg))
    pen_width = int(rng.choice(pen_widths))
    for stroke in strokes:
        points = []
        for x, y in stroke:
            x, y = x + rng.normal(0, wobble) - 0.5, y + rng.normal(0, wobble) - 0.5  # wobble, about the box centre
            x, y = x * math.cos(slant) - y * math.sin(slant), x * math.sin(slant) + y * math.cos(slant)
            points.append((left + (x + 0.5) * width, top + (y + 0.5) * tall))
        pen.line(points, fill=255, width=pen_width, joint="curve")
        for px, py in (points[0], points[-1]) if len(points) > 1 else points:  # round pen ends (a dot if alone)
            r = pen_width / 2
            pen.ellipse([px - r, py - r, px + r, py + r], fill=255)
    return as_canvas(canvas)


def as_canvas(image: Image.Image) -> np.ndarray:
    """An "L" image of white strokes on black as the canvas sends it: (280, 280, 4) uint8 RGBA, opaque."""
    rgba = np.zeros((CANVAS_SIZE, CANVAS_SIZE, 4), dtype=np.uint8)
    rgba[..., :3] = np.asarray(image)[..., None]
    rgba[..., 3] = 255
    return rgba


def draw_style(style: str, rng: np.random.Generator) -> np.ndarray:
    """One drawing of `style` as the canvas returns it: (280, 280, 4) uint8 RGBA, white strokes on black."""
    return pen_drawing(STYLES[style][1], rng)


def style_accuracy(model: torch.nn.Module, style: str, count: int, seed: int) -> float:
    """How often `model` reads `count` fresh drawings of `style` as the digit they are (a "not a digit" answer is
    wrong)."""
    rng = np.random.default_rng(seed)
    digit = STYLES[style][0]
    read = (classify(model, draw_style(style, rng)) for _ in range(count))
    return sum(p.is_digit and p.digit == digit for p in read) / count
