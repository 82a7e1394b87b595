"""Digits as people write them that MNIST has few of (a round or slashed zero, a one with a flag, a serif or a foot,
a crossed seven, ...) and digits typed in vector fonts, in groups that leave-style-out holds out together.

    python -c "from training.synthetic.styles import style_digits; print(style_digits(20, 1)[0].shape)"

A digit stays a digit however it is written: these are trained beside MNIST in the not-a-digit stage
(training.synthetic.mixes), and training.evaluation.leave_out measures each group on a model that never saw it.
Typed characters (letters and symbols for the non-digits too) are drawn here (`typed`), from the fonts matplotlib ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from inference.preprocess import IMAGE_SIZE, preprocess_image
from inference.canvas import CANVAS_SIZE
from training.synthetic.drawn import PenDigit, arc, as_canvas, pen_drawing

DEJAVU = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSansMono")
OTHER_FONTS = ("STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "cmr10", "cmss10", "cmtt10", "cmb10")

_O = arc(0.5, 0.5, 0.5, 0.5, -90, 270, 24)

# group -> digit -> ways (strokes in a unit box, (min, max) width/height).
COMMON_STYLES: dict[str, dict[int, list[PenDigit]]] = {
    "round and slashed zeros": {
        0: [([_O], (0.85, 1.15)), ([_O, [(0.85, 0.1), (0.15, 0.9)]], (0.65, 1.0)),
            ([_O, [(1.0, -0.05), (0.0, 1.05)]], (0.6, 0.9))],
    },
    "ones with a flag, a serif or a foot": {
        1: [([[(0.0, 0.42), (0.75, 0.0), (0.75, 1.0)]], (0.4, 0.65)),
            ([[(0.1, 0.3), (0.6, 0.0), (0.6, 1.0)], [(0.2, 1.0), (1.0, 1.0)]], (0.45, 0.7)),
            ([[(0.05, 0.35), (0.7, 0.0), (0.7, 1.0)], [(0.3, 1.0), (1.0, 1.0)]], (0.5, 0.75)),
            ([[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]], (0.25, 0.45))],
    },
    "crossed sevens and open fours": {
        7: [([[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)], [(0.25, 0.5), (0.85, 0.5)]], (0.6, 0.85)),
            ([[(0.0, 0.2), (0.0, 0.0), (1.0, 0.0), (0.45, 1.0)], [(0.3, 0.45), (0.9, 0.45)]], (0.6, 0.85))],
        4: [([[(0.2, 0.0), (0.05, 0.6), (1.0, 0.6)], [(0.7, 0.15), (0.7, 1.0)]], (0.65, 0.9)),
            ([[(0.1, 0.0), (0.1, 0.55), (0.9, 0.55)], [(0.85, 0.0), (0.85, 1.0)]], (0.6, 0.85))],
    },
    "flat-topped threes and two-stroke fives": {
        3: [([[(0.0, 0.0), (0.95, 0.0), (0.35, 0.42), *arc(0.45, 0.7, 0.5, 0.3, -90, 150, 12)]], (0.6, 0.8))],
        5: [([[(0.15, 0.0), (0.1, 0.45), *arc(0.45, 0.7, 0.45, 0.3, -120, 150, 12)], [(0.1, 0.0), (0.95, 0.02)]],
             (0.6, 0.8)),
            ([[(0.2, 0.0), (0.15, 0.5), *arc(0.5, 0.72, 0.45, 0.28, -140, 160, 12)], [(0.2, 0.0), (1.0, -0.05)]],
             (0.55, 0.75))],
    },
}  # fmt: skip
TYPED = {"typed (DejaVu)": DEJAVU, "typed (STIX, Computer Modern)": OTHER_FONTS}
STYLE_GROUPS = (*COMMON_STYLES, *TYPED)


def fonts(names: tuple[str, ...]) -> list[Path]:
    import matplotlib  # a dev dependency: its wheel ships the DejaVu, STIX and Computer Modern fonts

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / f"{name}.ttf" for name in names if (folder / f"{name}.ttf").is_file()]


def typed(char: str, path: Path, rng: np.random.Generator) -> np.ndarray | None:
    """`char` typed in the font at `path`, at a random size, place and tilt, sometimes thickened like a pen: the
    canvas's (280, 280, 4) RGBA, or None when the font has no ink for it."""
    font = ImageFont.truetype(str(path), size=int(rng.integers(90, 230)))
    glyph = Image.new("L", (CANVAS_SIZE * 2, CANVAS_SIZE * 2), 0)
    ImageDraw.Draw(glyph).text((CANVAS_SIZE // 2, CANVAS_SIZE // 2), char, fill=255, font=font)
    glyph = glyph.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    box = glyph.getbbox()
    if box is None:
        return None
    ink = glyph.crop(box)
    if ink.width > CANVAS_SIZE - 8 or ink.height > CANVAS_SIZE - 8:
        ink.thumbnail((CANVAS_SIZE - 8, CANVAS_SIZE - 8))
    if rng.random() < 0.5:  # canvas pens are thicker than most type
        ink = ink.filter(ImageFilter.MaxFilter(int(rng.choice([3, 5, 7]))))
    canvas = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    canvas.paste(
        ink, (int(rng.integers(0, CANVAS_SIZE - ink.width + 1)), int(rng.integers(0, CANVAS_SIZE - ink.height + 1)))
    )
    return as_canvas(canvas.point(lambda v: 255 if v > 100 else 0))


def style_digit(group: str, digit: int, rng: np.random.Generator) -> np.ndarray | None:
    """One drawing of `digit` in `group`'s ways (None: the group has no way of writing that digit)."""
    if group in TYPED:
        paths = fonts(TYPED[group])
        return typed(str(digit), paths[int(rng.integers(len(paths)))], rng)
    ways = COMMON_STYLES[group].get(digit)
    if not ways:
        return None
    strokes, aspect = ways[int(rng.integers(len(ways)))]
    return pen_drawing(strokes, rng, aspect=aspect, height=(90, 250), wobble=0.025, max_slant_deg=12)


def style_digits(
    count: int, seed: int, groups: tuple[str, ...] = STYLE_GROUPS
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`count` digits written in `groups`' ways, through the app's preprocessing: (count, 1, 28, 28) float32 in
    [0, 1], their labels, and each one's group. Groups take turns; typed groups cycle through all ten digits."""
    rng = np.random.default_rng(seed)
    # A handwritten group's few digits repeated, so the handwritten and the typed are about half each.
    plan = [(g, d) for g in groups for d in (range(10) if g in TYPED else sorted(COMMON_STYLES[g]) * 3)]
    images = np.zeros((count, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    labels, kinds = [], []
    for i in range(count):
        group, digit = plan[i % len(plan)] if plan else ("", 0)
        drawing = None
        while drawing is None:
            drawing = style_digit(group, digit, rng)
        images[i, 0] = preprocess_image(drawing)
        labels.append(digit)
        kinds.append(group)
    return torch.from_numpy(images), torch.tensor(labels, dtype=torch.long), kinds
