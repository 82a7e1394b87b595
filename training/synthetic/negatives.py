"""Drawings that are not digits: the 11th class the model learns ("not a digit"), and the held-out set that measures
how many of them it flags.

    python -m training.synthetic.negatives --preview data/negatives.png  # a grid of each family, as the model sees them

Every negative is drawn on a 280x280 canvas the way the app's canvas sends it (white strokes on black, a pen 12-28 px
wide) and goes through the app's own preprocessing (`preprocess_image`), so the model learns on exactly what it
will be shown. Two disjoint sources:

- `train`: letters drawn as pen strokes (training/synthetic/templates.py) and typed in the DejaVu fonts, punctuation and
  symbols by hand and typed, shapes, arrows and outlines, everyday pictures made afresh from parts
  (training.synthetic.doodles), smooth scribbles, filled blobs, digits crossed out, and two or three digits side by side
  (from the training split only). Each family belongs to a group (`GROUPS`) that leave-family-out holds out whole.
- `heldout`: other drawings for the model card's held-out figures: letters from other fonts (STIX, Computer
  Modern), shapes from fixed templates of their own (a sun, a cloud, an envelope, ...), jagged scribbles and
  hatching, and digits from the test split side by side or hatched over. Pictures of the same things are in
  training, so the honest figure on kinds never trained on is training.evaluation.leave_out's.

Letters that people draw like digits are left out of both (O, Q, D, I, l, J, S, Z, B, G, b, g, q and friends): a
"not a digit" label on them would teach the model to doubt honest 0s, 1s, 2s, 5s, 6s, 8s and 9s.
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from config.settings import settings
from inference.canvas import CANVAS_SIZE
from inference.preprocess import IMAGE_SIZE, EmptyDrawingError, preprocess_image
from training.dataset import load_mnist
from training.synthetic.drawn import Stroke, as_canvas, canvas_drawing, pen_drawing
from training.synthetic.doodles import PICTURES
from training.synthetic.styles import DEJAVU, OTHER_FONTS, fonts, typed
from training.synthetic.templates import (
    FONT_LETTERS,
    FONT_SYMBOLS,
    HAND_SYMBOLS,
    HELDOUT_SHAPES,
    LETTER_STROKES,
    LETTERS_ONLY,
    TRAIN_SHAPES,
)

# ----------------------------------------------------------------------------------------------------------------
# Families: each draws one (280, 280, 4) canvas from a seeded generator


def font_letter(paths: list[Path], rng: np.random.Generator, chars: str = FONT_LETTERS) -> np.ndarray:
    """A character of `chars` typed in one of the fonts at `paths` (styles.typed)."""
    while True:
        path = paths[int(rng.integers(len(paths)))]
        pool = LETTERS_ONLY if path.name.startswith("cm") else chars  # Computer Modern's ASCII symbols are others
        drawing = typed(pool[int(rng.integers(len(pool)))], path, rng)
        if drawing is not None:
            return drawing


def stroke_letter(rng: np.random.Generator) -> np.ndarray:
    names = sorted(LETTER_STROKES)
    name = names[int(rng.integers(len(names)))]
    return pen_drawing(LETTER_STROKES[name], rng, aspect=(0.6, 1.0), wobble=0.035, max_slant_deg=15)


def shape(shapes: dict[str, tuple[list[Stroke], tuple[float, float]]], rng: np.random.Generator) -> np.ndarray:
    names = sorted(shapes)
    strokes, aspect = shapes[names[int(rng.integers(len(names)))]]
    return pen_drawing(strokes, rng, aspect=aspect, height=(70, 240), wobble=0.025, max_slant_deg=15)


def hand_symbol(rng: np.random.Generator) -> np.ndarray:
    names = sorted(HAND_SYMBOLS)
    strokes, aspect = HAND_SYMBOLS[names[int(rng.integers(len(names)))]]
    return pen_drawing(strokes, rng, aspect=aspect, height=(80, 240), wobble=0.03, max_slant_deg=15)


def picture(rng: np.random.Generator) -> np.ndarray:
    """An everyday doodle (training/synthetic/doodles.py), new parts every time."""
    names = sorted(PICTURES)
    strokes, aspect = PICTURES[names[int(rng.integers(len(names)))]](rng)
    return pen_drawing(strokes, rng, aspect=aspect, height=(90, 250), wobble=0.02, max_slant_deg=15)


def spread_angles(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` sorted random angles with no gap over 150 degrees: corners bunched on one side make a sliver, and a
    sliver is a fair 1."""
    while True:
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
        if gaps.max() <= np.radians(150):
            return angles


def outline(rng: np.random.Generator) -> np.ndarray:
    """A closed outline that is no digit: a random polygon of 3-5 corners (more would round it into a 0), or a round
    shape with 3-7 deep bumps (each dips a quarter of the radius or more, so it never passes for a sloppy 0)."""
    if rng.random() < 0.5:
        corners = int(rng.integers(3, 6))
        angles = spread_angles(corners, rng)
        radii = rng.uniform(0.35, 1.0, corners)
    else:
        lobes, depth, phase = int(rng.integers(3, 8)), rng.uniform(0.25, 0.45), rng.uniform(0, 2 * np.pi)
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = 1.0 - depth * (0.5 + 0.5 * np.sin(lobes * angles + phase))
    points = [(0.5 + 0.5 * r * np.cos(a), 0.5 + 0.5 * r * np.sin(a)) for r, a in zip(radii, angles)]
    return pen_drawing([[*points, points[0]]], rng, aspect=(0.7, 1.4), height=(80, 240), wobble=0.02)


def smooth_scribble(rng: np.random.Generator) -> list[Stroke]:
    """A random walk with momentum: loops and curls, as when someone tests the canvas."""
    points, heading, x, y = [], rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    turn = 0.0
    for _ in range(int(rng.integers(45, 100))):
        turn = 0.8 * turn + rng.normal(0, 0.5)
        heading += turn
        x = float(np.clip(x + 0.07 * np.cos(heading), 0, 1))
        y = float(np.clip(y + 0.07 * np.sin(heading), 0, 1))
        points.append((x, y))
    return [points]


def jagged_scribble(rng: np.random.Generator) -> list[Stroke]:
    """Held out: straight back-and-forth segments, or parallel hatching."""
    if rng.random() < 0.5:
        return [[(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))) for _ in range(int(rng.integers(6, 14)))]]
    lines = int(rng.integers(3, 7))
    tilt = rng.uniform(-0.4, 0.4)
    return [[(0.0, (i + 0.5) / lines + tilt), (1.0, (i + 0.5) / lines - tilt)] for i in range(lines)]


def scribble(rng: np.random.Generator, heldout: bool = False) -> np.ndarray:
    strokes = jagged_scribble(rng) if heldout else smooth_scribble(rng)
    return pen_drawing(strokes, rng, aspect=(0.6, 1.6), height=(80, 240), wobble=0.0, max_slant_deg=0)


def blob(rng: np.random.Generator) -> np.ndarray:
    """A filled shape: someone colouring in."""
    canvas = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    cx, cy, r = rng.uniform(90, 190), rng.uniform(90, 190), rng.uniform(35, 85)
    angles = spread_angles(int(rng.integers(5, 10)), rng)
    radii = r * rng.uniform(0.6, 1.2, len(angles))
    ImageDraw.Draw(canvas).polygon([(cx + a * np.cos(t), cy + a * np.sin(t)) for a, t in zip(radii, angles)], fill=255)
    return as_canvas(canvas)


def _digit_ink(digits: torch.Tensor, rng: np.random.Generator) -> Image.Image:
    """One digit as canvas strokes, cropped to its ink ("L", white on black)."""
    while True:
        one = Image.fromarray(canvas_drawing(digits[int(rng.integers(len(digits)))].squeeze(0).numpy(), rng)[..., 0])
        box = one.getbbox()
        if box is not None:
            return one.crop(box)


def digits_side_by_side(digits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """Two or three digits in a row, the same height, a small gap apart: a number, not a digit."""
    pieces = [_digit_ink(digits, rng) for _ in range(int(rng.integers(2, 4)))]
    height = float(rng.uniform(60, 150))
    gaps = [height * float(rng.uniform(0.08, 0.35)) for _ in pieces[1:]]
    widths = [p.width * height / p.height for p in pieces]
    fit = min(1.0, (CANVAS_SIZE - 16) / (sum(widths) + sum(gaps)))  # shrink the row until it fits the canvas
    height, widths, gaps = height * fit, [w * fit for w in widths], [g * fit for g in gaps]
    x = float(rng.uniform(8, max(8.0, CANVAS_SIZE - 8 - sum(widths) - sum(gaps))))
    middle = float(rng.uniform(8 + height / 2, CANVAS_SIZE - 8 - height / 2))
    canvas = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    for k, piece in enumerate(pieces):
        size = (max(1, round(widths[k])), max(1, round(height)))
        scaled = piece.resize(size, Image.Resampling.BILINEAR)
        canvas.paste(scaled, (round(x), round(middle - height / 2 + rng.normal(0, 0.05) * height)), scaled)
        x += widths[k] + (gaps[k] if k < len(gaps) else 0.0)
    return as_canvas(canvas)


def crossed_out(digits: torch.Tensor, rng: np.random.Generator, heldout: bool = False) -> np.ndarray:
    """A digit struck through, scribbled or hatched over past its edges: the user changed their mind."""
    ink = _digit_ink(digits, rng)
    side = max(ink.width, ink.height)
    scale = float(rng.uniform(90, 200)) / side
    ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.Resampling.BILINEAR)
    image = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    left = (CANVAS_SIZE - ink.width) // 2 + int(rng.integers(-30, 31))
    top = (CANVAS_SIZE - ink.height) // 2 + int(rng.integers(-30, 31))
    image.paste(ink, (left, top), ink)
    # The strokes over it cover a square box a little larger than the digit, so even a thin 1 is clearly crossed.
    cover = max(ink.width, ink.height) * float(rng.uniform(1.0, 1.25))
    cx, cy = left + ink.width / 2, top + ink.height / 2
    if heldout:
        over = jagged_scribble(rng)
    elif rng.random() < 0.5:
        over = [[(x, y) for x, y in smooth_scribble(rng)[0]]]
    else:
        over = [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]]
    pen = ImageDraw.Draw(image)
    width = int(rng.choice([12, 16, 20, 24]))
    for stroke in over:
        points = [(cx + (x - 0.5) * cover, cy + (y - 0.5) * cover) for x, y in stroke]
        pen.line(points, fill=255, width=width, joint="curve")
    return as_canvas(image)


Drawer = Callable[[np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Family:
    """One kind of non-digit: its share of the set, its group (what leave-family-out holds out together) and how
    to draw one."""

    share: float
    group: str
    draw: Drawer


# What leave-family-out holds out, one group at a time (training.evaluation.leave_out): families that share a look go
# together,
# so a fold's figure is on drawings unlike anything it was trained on.
GROUPS = ("letters", "symbols", "shapes", "pictures", "scribbles", "several digits")


def families(source: str, digits: torch.Tensor) -> dict[str, Family]:
    """name -> Family for `source` "train" or "heldout"; `digits` (N, 1, 28, 28) come from the matching MNIST split
    (training digits for training, test digits for the held-out set)."""
    if source == "train":
        paths = fonts(DEJAVU)
        return {
            "letter (strokes)": Family(0.12, "letters", stroke_letter),
            "letter (DejaVu)": Family(0.08, "letters", lambda rng: font_letter(paths, rng)),
            "symbol (strokes)": Family(0.09, "symbols", hand_symbol),
            "symbol (DejaVu)": Family(0.05, "symbols", lambda rng: font_letter(paths, rng, FONT_SYMBOLS)),
            "shape": Family(0.12, "shapes", lambda rng: shape(TRAIN_SHAPES, rng)),
            "outline": Family(0.04, "shapes", outline),
            "picture": Family(0.26, "pictures", picture),
            "scribble": Family(0.07, "scribbles", scribble),
            "blob": Family(0.03, "scribbles", blob),
            "crossed-out digit": Family(0.06, "several digits", lambda rng: crossed_out(digits, rng)),
            "digits side by side": Family(0.08, "several digits", lambda rng: digits_side_by_side(digits, rng)),
        }
    if source == "heldout":
        paths = fonts(OTHER_FONTS)
        return {
            "letter (STIX, Computer Modern)": Family(0.35, "letters", lambda rng: font_letter(paths, rng)),
            "shape (held out)": Family(0.30, "shapes", lambda rng: shape(HELDOUT_SHAPES, rng)),
            "scribble (jagged, hatching)": Family(0.15, "scribbles", lambda rng: scribble(rng, heldout=True)),
            "hatched digit": Family(0.10, "several digits", lambda rng: crossed_out(digits, rng, heldout=True)),
            "test digits side by side": Family(0.10, "several digits", lambda rng: digits_side_by_side(digits, rng)),
        }
    raise ValueError(f"source must be 'train' or 'heldout', got {source!r}")


def make_negatives(
    count: int, source: str, digits: torch.Tensor, seed: int, groups: tuple[str, ...] = GROUPS
) -> tuple[torch.Tensor, list[str]]:
    """`count` non-digits from the families of `groups`, as the model sees them: (count, 1, 28, 28) float32 in
    [0, 1], and each one's family. Large sets are drawn in `WORKERS` forked processes (drawing is pure numpy and
    PIL, a third of a training run's time), each chunk with a seed of its own, so a set is the same on every run."""
    if count < PARALLEL_FROM:
        images, kinds = draw_negatives(count, source, digits, seed, groups)
        return torch.from_numpy(images), kinds
    global _DIGITS
    _DIGITS = digits  # the forked workers read it from here: a tensor in the arguments would be pickled
    sizes = [count // WORKERS + (k < count % WORKERS) for k in range(WORKERS)]
    jobs = [(size, source, seed * 7_919 + k, groups) for k, size in enumerate(sizes)]
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        parts = pool.map(_draw_job, jobs)
    _DIGITS = None
    return torch.from_numpy(np.concatenate([p[0] for p in parts])), [kind for p in parts for kind in p[1]]


WORKERS = 2
PARALLEL_FROM = 1_000
_DIGITS: torch.Tensor | None = None


def _draw_job(job: tuple[int, str, int, tuple[str, ...]]) -> tuple[np.ndarray, list[str]]:
    count, source, seed, groups = job
    assert _DIGITS is not None
    return draw_negatives(count, source, _DIGITS, seed, groups)


def draw_negatives(
    count: int, source: str, digits: torch.Tensor, seed: int, groups: tuple[str, ...]
) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    table = {name: family for name, family in families(source, digits).items() if family.group in groups}
    names = list(table)
    shares = np.array([table[n].share for n in names])
    picks = rng.choice(len(names), size=count, p=shares / shares.sum())
    images = np.zeros((count, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    kinds = []
    for i, k in enumerate(picks):
        drawer = table[names[k]].draw
        while True:
            try:
                images[i, 0] = preprocess_image(drawer(rng))
                break
            except EmptyDrawingError:  # too small to read: the app would not classify it either
                continue
        kinds.append(names[k])
    return images, kinds


def group_of(kinds: list[str], source: str = "train") -> list[str]:
    """Each family name's group."""
    table = families(source, torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))
    return [table[kind].group for kind in kinds]


def preview(out: Path, digits: torch.Tensor, per_family: int = 12) -> None:
    """A grid: one row per family (train, then held out), as 28x28 model inputs."""
    rows = []
    for source in ("train", "heldout"):
        for name, family in families(source, digits).items():
            rng = np.random.default_rng(sum(map(ord, name)))
            row = [preprocess_image(family.draw(rng)) for _ in range(per_family)]
            rows.append(np.concatenate(row, axis=1))
    grid = (np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(out)
    print(f"wrote {out}: rows = {[*families('train', digits), *families('heldout', digits)]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preview", type=Path, required=True, help="PNG to write the grid to")
    parser.add_argument("--data-dir", default=settings().mnist_dir, help="offline MNIST folder (env MNIST_DIR)")
    options = parser.parse_args()
    mnist_train = load_mnist(options.data_dir)[0]
    preview(options.preview, mnist_train.images)
