"""Reading a number: the digits side by side in one drawing, found by the gaps between them and read one by one.

    python -c "import numpy as np, utils; from inference.number import read_number; \
               print(read_number(utils.load_model(), np.zeros((280, 280), np.uint8)))"

The drawing's ink is split into connected pieces, and pieces that share most of their width are joined: one digit's
separate strokes (a two-stroke 5, an open 4, a crossed 7, a 1 with a foot) overlap in x and stay together, while
digits written with a little space between them come apart even when slanted. A small fragment joins the digit it sits
by; specks far from any digit are ignored. Each part is read by the
same model and preprocessing as a single digit, all parts in one batch.

It is a number only when every part is a digit; otherwise the reading says which part is not. A part far wider than
tall that the model is not sure of is taken for digits that touch, and said so rather than guessed. Touching digits
that pass for one digit are rarely sure to be one (side-by-side digits were the model's "not a digit" examples): the
number's confidence counts that doubt, so such a number is not given with confidence. Cutting a wide part at its
valley, and refusing every doubted part, were tried and measured (BENCHMARKS.md): neither is done. Parts of very
different sizes or heights are not a number at all: the drawing is read as one image, as a single digit is; so are
two or three pieces that overlap or nearly touch, together narrower than tall, when the whole is surely one digit
(a 4 drawn open, a loose top).
One part is a single digit, read exactly as `classify` reads it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.labels import MAX_DIGITS
from inference.predict import Prediction, convert_to_tensor, prediction_from, read_input, to_png
from inference.preprocess import EmptyDrawingError, Ink, fit_ink, preprocess_image, read_ink

SAME_DIGIT = 0.5  # pieces sharing at least this share of the narrower one's width are one digit's strokes
NEAR = 0.3  # a low piece within this fraction of the tallest digit's height of a digit is part of it
SPECK = 0.2  # a lone piece smaller than this fraction of the tallest part's height, both ways, is a speck
TOUCHING = 1.25  # a part wider than this many times its height, and not surely one digit, is digits that touch
SURE = 0.9  # (a wide 2 or 7 read with this confidence is one digit)
SIZE_SPREAD = 0.4  # the shortest part of a number is at least this fraction of the tallest...
WHOLE_SURE = 0.99  # pieces that overlap or nearly touch (CLOSE), read whole with this confidence, are one digit's
CLOSE = 0.05
WHOLE_DOUBT = 0.05  # ... and a "not a digit" score below this
ONE_WIDE = 0.8  # ... and together narrower than tall (two touching digits are wider: they are read part by part)
MISALIGNED = 0.5  # ...and the parts' vertical centres lie within this fraction of the tallest part's height

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in the drawing's pixels, right and bottom exclusive


@dataclass(frozen=True)
class NumberReading:
    """A drawing read as a number: each part's prediction and box, left to right, and what stops it being a number
    (None when it is one). `number` is the digits as text when it is one."""

    parts: list[Prediction]
    boxes: list[Box]
    problem: str | None = None
    touching: list[int] = field(default_factory=list)  # indexes of parts that look like digits touching

    @property
    def is_number(self) -> bool:
        return self.problem is None

    @property
    def number(self) -> str | None:
        return "".join(str(p.digit) for p in self.parts) if self.is_number else None

    @property
    def is_single(self) -> bool:
        """One part: a single digit's (or a non-digit's) answer, exactly as `classify` gives it."""
        return len(self.parts) == 1

    @property
    def confidence(self) -> float:
        """The chance every part is read right: the product, over the parts, of the part's digit's probability among
        all eleven answers (its confidence among the ten, times its chance of being a digit at all). Digits that touch
        and pass for one digit are rarely sure to be one: their number is not given with confidence."""
        return float(np.prod([part.confidence * (1.0 - part.not_digit_score) for part in self.parts]))

    @property
    def png(self) -> bytes:
        """The parts' 28x28 inputs side by side (28 x 28n), as the log stores a number's image."""
        return to_png(np.hstack([part.model_input for part in self.parts]))


@dataclass
class Piece:
    """Ink that belongs together: its box and its runs (row, start, end), so a part is read without its neighbours'
    strokes even where a slanted digit reaches into the next one's columns."""

    box: Box
    runs: list[tuple[int, int, int]]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def join(self, other: Piece) -> None:
        self.box = union(self.box, other.box)
        self.runs += other.runs


def components(mask: np.ndarray) -> list[Piece]:
    """The mask's 8-connected pieces: runs of ink per row, joined to the runs they touch in the row above
    (union-find over runs; no image-sized label array, a few hundred runs for a drawing)."""
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)  # +1 where a run starts, -1 past its end
    rows, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]  # row-major like the starts: the n-th end closes the n-th run
    runs = list(zip(rows.tolist(), starts.tolist(), ends.tolist()))
    parent = list(range(len(runs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(rows, np.arange(mask.shape[0] + 1)).tolist()  # runs of row y: row_start[y]...[y+1]
    for index, (y, start, end) in enumerate(runs):
        for other in range(row_start[y - 1], row_start[y]) if y else ():
            if runs[other][1] <= end and start <= runs[other][2]:  # overlapping or diagonal: 8-connected
                parent[root(other)] = root(index)
    pieces: dict[int, Piece] = {}
    for index, (y, start, end) in enumerate(runs):
        key = root(index)
        if key in pieces:
            pieces[key].join(Piece((start, y, end, y + 1), [runs[index]]))
        else:
            pieces[key] = Piece((start, y, end, y + 1), [runs[index]])
    return sorted(pieces.values(), key=lambda piece: piece.box)


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def x_overlap(a: Box, b: Box) -> float:
    """How much of the narrower box's width the two share."""
    shared = min(a[2], b[2]) - max(a[0], b[0])
    return max(0, shared) / max(1, min(a[2] - a[0], b[2] - b[0]))


def gap(a: Box, b: Box) -> int:
    """Horizontal distance between two boxes' edges (0 when they overlap in x)."""
    return max(0, max(a[0], b[0]) - min(a[2], b[2]))


def join_overlapping(pieces: list[Piece]) -> list[Piece]:
    """Pieces that share most of the narrower one's width joined into one, until none do."""
    pieces = list(pieces)
    merging = True
    while merging:
        merging = False
        for i, j in ((i, j) for i in range(len(pieces)) for j in range(i + 1, len(pieces))):
            if x_overlap(pieces[i].box, pieces[j].box) >= SAME_DIGIT:
                pieces[i].join(pieces.pop(j))
                merging = True
                break
    return pieces


def digit_pieces(mask: np.ndarray) -> list[Piece]:
    """The digits, left to right. Pieces of a digit's height that share most of their width are one digit's strokes
    (an open 4, a crossed 7, a 1 with a foot). Low pieces (a 5's detached top, a broken stroke) are joined the same
    way among themselves, then join the digit they sit by; far from any, they are a (broken) digit of their own if
    together they are tall enough, a stray mark (then the drawing is not a number), or a speck, dropped."""
    pieces = components(mask)
    tallest = max((piece.height for piece in pieces), default=0)
    digits = join_overlapping([p for p in pieces if p.height >= SIZE_SPREAD * tallest])
    alone = []
    for piece in join_overlapping([p for p in pieces if p.height < SIZE_SPREAD * tallest]):
        near = min(digits, key=lambda digit: gap(digit.box, piece.box), default=None)
        if near is not None and gap(near.box, piece.box) <= NEAR * tallest:
            near.join(piece)
        elif piece.height >= SIZE_SPREAD * tallest:
            digits.append(piece)
        elif max(piece.box[2] - piece.box[0], piece.height) >= SPECK * tallest:
            alone.append(piece)
    return sorted(digits + alone, key=lambda piece: piece.box)


def looks_like_a_number(boxes: list[Box]) -> bool:
    """Parts of a number are of a size and on a line; scattered parts of a doodle are usually not."""
    heights = [bottom - top for _, top, _, bottom in boxes]
    centres = [(top + bottom) / 2 for _, top, _, bottom in boxes]
    tallest = max(heights)
    return min(heights) >= SIZE_SPREAD * tallest and max(centres) - min(centres) <= MISALIGNED * tallest


def part_image(ink: np.ndarray, piece: Piece) -> np.ndarray:
    """The piece's own ink on black, with a dark border (so its background is known), nothing of its neighbours."""
    left, top, right, bottom = piece.box
    pad = max(right - left, bottom - top) // 4 + 1
    out = np.zeros((bottom - top + 2 * pad, right - left + 2 * pad), dtype=np.float32)
    for y, start, end in piece.runs:
        out[y - top + pad, start - left + pad : end - left + pad] = ink[y, start:end]
    return out


def read_parts(model: nn.Module, ink: np.ndarray, pieces: list[Piece]) -> list[Prediction]:
    """Each piece of the ink map read as a digit, all in one forward pass."""
    inputs = [preprocess_image(part_image(ink, piece)) for piece in pieces]
    batch = torch.cat([convert_to_tensor(x) for x in inputs]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = model(batch)
    return [prediction_from(model, row, model_input) for row, model_input in zip(logits, inputs)]


def looks_touching(box: Box, part: Prediction) -> bool:
    """Digits that touch read as one part: far wider than tall, and not surely one digit."""
    left, top, right, bottom = box
    return right - left > TOUCHING * (bottom - top) and not (part.is_digit and part.confidence >= SURE)


def problem_with(parts: list[Prediction], touching: list[int]) -> str | None:
    if touching:
        which = ", ".join(ordinal(i) for i in touching)
        return f"The {which} part seems to be digits that touch: leave a little space between digits."
    not_digits = [i for i, part in enumerate(parts) if not part.is_digit]
    if not_digits:
        which = ", ".join(ordinal(i) for i in not_digits)
        return f"The {which} part doesn't look like a digit."
    return None


def ordinal(index: int) -> str:
    n = index + 1
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def read_number(model: nn.Module, image_data: np.ndarray | Image.Image) -> NumberReading:
    """The drawing read as a number of 1 to MAX_DIGITS digits (raises `EmptyDrawingError` for nothing to read)."""
    read = read_ink(image_data)  # once: the whole drawing's input and the parts' are cut from it
    ink, mask = read.level, read.mask
    pieces = digit_pieces(mask)
    boxes = [piece.box for piece in pieces]
    if not boxes:
        raise EmptyDrawingError("Draw a digit first: the image has no visible ink.")
    whole = one_digit_after_all(model, read, boxes)
    if whole is not None:
        return NumberReading([whole], [scale_box(functools.reduce(union, boxes), ink, image_data)])
    if len(boxes) == 1 or len(boxes) > MAX_DIGITS or not looks_like_a_number(boxes):
        whole = read_input(model, fit_ink(read))  # one digit, or not a number: read as one image, as `classify` does
        box = (0, 0, mask.shape[1], mask.shape[0]) if len(boxes) != 1 else boxes[0]
        problem = None if whole.is_digit else "It doesn't look like a digit."
        return NumberReading([whole], [scale_box(box, ink, image_data)], problem)
    parts = read_parts(model, ink, pieces)
    touching = [i for i, (box, part) in enumerate(zip(boxes, parts)) if looks_touching(box, part)]
    scaled = [scale_box(box, ink, image_data) for box in boxes]
    return NumberReading(parts, scaled, problem_with(parts, touching), touching)


def one_digit_after_all(model: nn.Module, read: Ink, boxes: list[Box]) -> Prediction | None:
    """A digit whose strokes came apart (a 4 drawn open, a 5's loose top) overlaps its pieces in x, as digits written
    with a space do not: read whole, it is surely one digit. None when it is not (then it is read part by part)."""
    tallest = max(bottom - top for _, top, _, bottom in boxes)
    left, top, right, bottom = functools.reduce(union, boxes)
    if not 1 < len(boxes) <= 3 or all(gap(a, b) > CLOSE * tallest for a, b in zip(boxes, boxes[1:])):
        return None
    if right - left > ONE_WIDE * (bottom - top):  # as wide as two digits side by side: not one digit's pieces
        return None
    whole = read_input(model, fit_ink(read))
    return whole if whole.is_digit and whole.confidence >= WHOLE_SURE and whole.not_digit_score < WHOLE_DOUBT else None


def scale_box(box: Box, ink: np.ndarray, image_data: np.ndarray | Image.Image) -> Box:
    """A box on the (possibly downscaled) ink map, in the drawing's own pixels."""
    width = image_data.width if isinstance(image_data, Image.Image) else image_data.shape[1]
    factor = width / ink.shape[1]
    return (round(box[0] * factor), round(box[1] * factor), round(box[2] * factor), round(box[3] * factor))
