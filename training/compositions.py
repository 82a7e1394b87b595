"""Compositions of primitives: drawings made of random strokes put together (a circle with marks inside, a shape
with a stem or a tail, a wave beside a zigzag), so that "not a digit" is learnt from the space of drawings and not
only from the families someone thought to list.

    python -m training.negatives --preview data/negatives.png    # the row "composition" shows them

Each generator takes a seeded `numpy` generator and returns `(strokes, aspect)` in a unit box (x right, y down),
as training/doodles.py does; `drawn.pen_drawing` adds size, place, slant, pen width and wobble.

What keeps these from being digits: a digit is one to three strokes of a few known shapes. Scattered primitives
are four or more, or two or three of which one is "busy" (a zigzag, a spiral, a wave, a polygon, a star, a cluster
of dots: no digit contains one); an outline has two to four marks inside it; a busy shape has two or three stems.
A lone circle, a circle and a stem, or one line through a circle (0, 6, 9, a slashed zero) never come out of here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from training.drawn import Stroke, arc

Box = tuple[float, float, float, float]  # left, top, width, height inside the unit box
Primitive = Callable[[np.random.Generator, Box], list[Stroke]]


def _at(box: Box, x: float, y: float) -> tuple[float, float]:
    """A point given in the box's own unit coordinates, in the drawing's."""
    left, top, width, height = box
    return (left + x * width, top + y * height)


def segment(rng: np.random.Generator, box: Box) -> list[Stroke]:
    return [[_at(box, *rng.uniform(0, 1, 2)), _at(box, *rng.uniform(0, 1, 2))]]


def open_arc(rng: np.random.Generator, box: Box) -> list[Stroke]:
    start, sweep = rng.uniform(0, 360), rng.uniform(60, 270) * rng.choice([-1, 1])
    return [[_at(box, x, y) for x, y in arc(0.5, 0.5, 0.5, 0.5, start, start + sweep, 14)]]


def ring(rng: np.random.Generator, box: Box) -> list[Stroke]:
    return [[_at(box, x, y) for x, y in arc(0.5, 0.5, 0.5, 0.5, 0, 360, 20)]]


def zigzag(rng: np.random.Generator, box: Box) -> list[Stroke]:
    teeth = int(rng.integers(3, 8))
    xs = np.linspace(0, 1, teeth + 1)
    return [[_at(box, float(x), float(k % 2)) for k, x in enumerate(xs)]]


def wave(rng: np.random.Generator, box: Box) -> list[Stroke]:
    cycles, t = rng.uniform(1.5, 3.5), np.linspace(0, 1, 24)
    return [[_at(box, float(x), 0.5 + 0.5 * math.sin(2 * math.pi * cycles * x)) for x in t]]


def spiral(rng: np.random.Generator, box: Box) -> list[Stroke]:
    turns, t = rng.uniform(1.5, 3.0), np.linspace(0, 1, 40)
    way = rng.choice([-1, 1])
    return [[_at(box, 0.5 + 0.5 * s * math.cos(way * 2 * math.pi * turns * s), 0.5 + 0.5 * s * math.sin(
        way * 2 * math.pi * turns * s)) for s in t]]  # fmt: skip


def polygon(rng: np.random.Generator, box: Box) -> list[Stroke]:
    corners = int(rng.integers(3, 7))
    angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
    points = [_at(box, 0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)) for a in angles]
    return [[*points, points[0]]]


def star(rng: np.random.Generator, box: Box) -> list[Stroke]:
    arms = int(rng.integers(4, 9))
    spin = rng.uniform(0, math.pi)
    return [[_at(box, 0.5, 0.5), _at(box, 0.5 + 0.5 * math.cos(spin + k * math.pi / arms * 2),
             0.5 + 0.5 * math.sin(spin + k * math.pi / arms * 2))] for k in range(arms)]  # fmt: skip


def dots(rng: np.random.Generator, box: Box) -> list[Stroke]:
    return [[_at(box, *rng.uniform(0, 1, 2))] for _ in range(int(rng.integers(2, 6)))]


PLAIN: tuple[Primitive, ...] = (segment, open_arc, ring)
BUSY: tuple[Primitive, ...] = (zigzag, wave, spiral, polygon, star, dots)


def _box(rng: np.random.Generator, within: Box | None = None) -> Box:
    """A random box in the unit square, or inside `within` (marks inside a shape)."""
    left, top, width, height = within or (0.0, 0.0, 1.0, 1.0)
    w, h = rng.uniform(0.35, 0.8) * width, rng.uniform(0.35, 0.8) * height
    return (left + rng.uniform(0, width - w), top + rng.uniform(0, height - h), w, h)


def _pick(rng: np.random.Generator, busy: bool) -> Primitive:
    pool = BUSY if busy else PLAIN + BUSY
    return pool[int(rng.integers(len(pool)))]


def scattered(rng: np.random.Generator) -> list[Stroke]:
    """Primitives anywhere in the box, overlapping or apart."""
    count = int(rng.integers(2, 6))
    strokes: list[Stroke] = []
    for k in range(count):  # up to three primitives, one is busy: three plain strokes can make a 4 or a crossed 7
        strokes += _pick(rng, busy=count <= 3 and k == 0)(rng, _box(rng))
    return strokes


def nested(rng: np.random.Generator) -> list[Stroke]:
    """A closed outline (a ring or a polygon) with two to four marks inside it."""
    outer: Box = (0.0, 0.0, 1.0, 1.0)
    strokes = (ring if rng.random() < 0.5 else polygon)(rng, outer)
    inner: Box = (0.15, 0.15, 0.7, 0.7)
    for _ in range(int(rng.integers(2, 5))):
        strokes += _pick(rng, busy=False)(rng, _box(rng, inner))
    return strokes


def with_stems(rng: np.random.Generator) -> list[Stroke]:
    """A busy shape with two or three stems or tails leaving it (a digit has at most one)."""
    body: Box = (0.25, 0.25, 0.5, 0.5)
    strokes = _pick(rng, busy=True)(rng, body)
    for _ in range(int(rng.integers(2, 4))):
        angle = rng.uniform(0, 2 * math.pi)
        start = (0.5 + 0.25 * math.cos(angle), 0.5 + 0.25 * math.sin(angle))
        reach = rng.uniform(0.15, 0.25)
        bend = angle + rng.uniform(-0.6, 0.6)
        strokes.append([start, (start[0] + reach * math.cos(bend), start[1] + reach * math.sin(bend))])
    return strokes


def composition(rng: np.random.Generator) -> tuple[list[Stroke], tuple[float, float]]:
    """One composition, with the aspect range to draw it at."""
    make = (scattered, nested, with_stems)[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    return make(rng), (0.6, 1.5)
