"""Everyday doodles and hand-drawn symbols: what people draw on a digit canvas when they test it (a smiley, a tree, a
cloud, a note, "?", "$", ...), each generated afresh from primitives so no two are the same.

    python -m training.synthetic.negatives --preview data/negatives.png    # a row per family, as the model sees them

Every generator takes a seeded `numpy` generator and returns `(strokes, aspect)`: strokes in a unit box (x right,
y down) and the (min, max) width/height ratio to draw them at (`drawn.pen_drawing` adds size, place, slant, pen
width and wobble). The parts vary (how many petals, rays, bumps; which mouth; a trunk or none) because a user draws
a picture the model never saw, and what must generalise is "a picture", not these pictures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from training.synthetic.drawn import Stroke, arc

Doodle = tuple[list[Stroke], tuple[float, float]]


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def circle(cx: float, cy: float, r: float, points: int = 20) -> Stroke:
    return arc(cx, cy, r, r, 0, 360, points)


def dot(x: float, y: float) -> Stroke:
    """A single point: drawn as a round dot the pen's width."""
    return [(x, y)]


def filled(cx: float, cy: float, rx: float, ry: float) -> list[Stroke]:
    """A small filled oval (a note head, a pupil): an outline and a scribble inside."""
    return [arc(cx, cy, rx, ry, 0, 360, 12), [(cx - rx * 0.6, cy), (cx + rx * 0.6, cy)]]


def mouth(rng: np.random.Generator, cx: float, cy: float, w: float) -> list[Stroke]:
    kind = int(rng.integers(4))
    if kind == 0:  # smile
        return [arc(cx, cy - w * 0.4, w, w * 0.6, 20, 160, 10)]
    if kind == 1:  # frown
        return [arc(cx, cy + w * 0.5, w, w * 0.5, 200, 340, 10)]
    if kind == 2:  # straight
        return [[(cx - w, cy), (cx + w, cy)]]
    return [circle(cx, cy, w * 0.4, 10)]  # "oh"


def face(rng: np.random.Generator) -> Doodle:
    """A round face with eyes and a mouth, and sometimes a nose, ears or hair."""
    strokes = [arc(0.5, 0.5, 0.48, 0.48, 0, 360, 24)]
    ey, spread = _u(rng, 0.3, 0.42), _u(rng, 0.13, 0.2)
    if rng.random() < 0.7:
        strokes += [dot(0.5 - spread, ey), dot(0.5 + spread, ey)]
    else:
        strokes += [circle(0.5 - spread, ey, 0.07, 10), circle(0.5 + spread, ey, 0.07, 10)]
    strokes += mouth(rng, 0.5, _u(rng, 0.65, 0.75), _u(rng, 0.12, 0.22))
    if rng.random() < 0.3:
        strokes.append([(0.5, 0.45), (0.47, 0.56), (0.52, 0.56)])
    if rng.random() < 0.25:
        strokes += [arc(0.02, 0.5, 0.06, 0.1, 90, 270, 8), arc(0.98, 0.5, 0.06, 0.1, -90, 90, 8)]
    if rng.random() < 0.25:
        strokes += [[(0.5 + dx, 0.04), (0.5 + dx * 1.3, -0.12)] for dx in (-0.15, 0.0, 0.15)]
    return strokes, (0.85, 1.15)


def animal_face(rng: np.random.Generator) -> Doodle:
    """A cat, bear or pig: a face with ears, whiskers or a snout."""
    strokes, aspect = face(rng)
    kind = int(rng.integers(3))
    if kind == 0:  # cat ears and whiskers
        strokes += [[(0.12, 0.3), (0.18, -0.05), (0.38, 0.07)], [(0.62, 0.07), (0.82, -0.05), (0.88, 0.3)]]
        strokes += [[(0.25, 0.6 + d), (-0.05, 0.55 + 2 * d)] for d in (-0.04, 0.04)]
        strokes += [[(0.75, 0.6 + d), (1.05, 0.55 + 2 * d)] for d in (-0.04, 0.04)]
    elif kind == 1:  # round ears
        strokes += [circle(0.15, 0.12, 0.12, 12), circle(0.85, 0.12, 0.12, 12)]
    else:  # a snout
        strokes += [circle(0.5, 0.6, 0.14, 12), dot(0.45, 0.6), dot(0.55, 0.6)]
    return strokes, aspect


def sun(rng: np.random.Generator) -> Doodle:
    r, rays = _u(rng, 0.18, 0.3), int(rng.integers(5, 13))
    phase = _u(rng, 0, 2 * math.pi)
    strokes = [circle(0.5, 0.5, r)]
    for k in range(rays):
        a = phase + 2 * math.pi * k / rays
        strokes.append([(0.5 + (r + 0.07) * math.cos(a), 0.5 + (r + 0.07) * math.sin(a)),
                        (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a))])  # fmt: skip
    if rng.random() < 0.3:
        strokes += [dot(0.5 - r / 3, 0.5 - r / 4), dot(0.5 + r / 3, 0.5 - r / 4)]
    return strokes, (0.9, 1.1)


def bumpy(cx: float, cy: float, rx: float, ry: float, bumps: int, depth: float, flat_bottom: bool) -> Stroke:
    """A closed outline with `bumps` round bulges (a cloud, a bush, a tree crown)."""
    t = np.linspace(0, 2 * np.pi, 16 * bumps + 1)
    radius = 1.0 + depth * np.abs(np.sin(bumps * t / 2))
    xs, ys = cx + rx * radius * np.cos(t) / (1 + depth), cy + ry * radius * np.sin(t) / (1 + depth)
    if flat_bottom:
        ys = np.minimum(ys, cy + ry * 0.55)
    return [(float(x), float(y)) for x, y in zip(xs, ys)]


def cloud(rng: np.random.Generator) -> Doodle:
    strokes = [bumpy(0.5, 0.55, 0.5, 0.42, int(rng.integers(4, 9)), _u(rng, 0.2, 0.4), rng.random() < 0.6)]
    if rng.random() < 0.35:  # rain
        strokes += [[(x, 1.05), (x - 0.05, 1.25)] for x in np.linspace(0.25, 0.75, int(rng.integers(2, 5)))]
    return strokes, (1.3, 2.0)


def tree(rng: np.random.Generator) -> Doodle:
    """A tree: a crown (bumpy, a pine of stacked triangles, or a round one with branches) on a trunk."""
    kind = int(rng.integers(3))
    trunk = [[(0.42, 0.62), (0.42, 1.0)], [(0.58, 0.62), (0.58, 1.0)], [(0.42, 1.0), (0.58, 1.0)]]
    if kind == 0:
        crown = [bumpy(0.5, 0.33, 0.45, 0.33, int(rng.integers(5, 10)), _u(rng, 0.2, 0.35), False)]
    elif kind == 1:
        tiers = int(rng.integers(2, 4))
        crown = [[(0.5, 0.62 * k / tiers), (0.95, 0.62 * (k + 1) / tiers + 0.05),
                  (0.05, 0.62 * (k + 1) / tiers + 0.05), (0.5, 0.62 * k / tiers)] for k in range(tiers)]  # fmt: skip
    else:
        crown = [bumpy(0.5, 0.33, 0.45, 0.33, int(rng.integers(7, 12)), 0.12, False)]
        crown += [[(0.5, 0.7), (0.5, 0.35), (0.3, 0.2)], [(0.5, 0.45), (0.72, 0.28)]]
    if rng.random() < 0.4:  # fruit or a ground line
        crown += [dot(_u(rng, 0.25, 0.75), _u(rng, 0.2, 0.5)) for _ in range(int(rng.integers(2, 5)))]
    return crown + trunk, (0.6, 1.0)


def flower(rng: np.random.Generator) -> Doodle:
    petals, r = int(rng.integers(4, 9)), _u(rng, 0.08, 0.12)
    strokes = [circle(0.5, 0.28, r, 12)]
    for k in range(petals):
        a = 2 * math.pi * k / petals
        strokes.append(arc(0.5 + 2 * r * math.cos(a), 0.28 + 2 * r * math.sin(a), r, r, 0, 360, 10))
    strokes.append([(0.5, 0.28 + 3 * r), (0.5, 1.0)])
    strokes.append(arc(0.64, 0.72, 0.14, 0.07, 160, 380, 10))  # a leaf: a head on a bare stick is a 9
    if rng.random() < 0.5:
        strokes.append(arc(0.36, 0.8, 0.14, 0.07, -20, 200, 10))
    return strokes, (0.7, 1.0)


def note(rng: np.random.Generator) -> Doodle:
    """A musical note: a filled head, a stem and a flag, or two notes beamed."""
    if rng.random() < 0.5:
        strokes = filled(0.3, 0.85, 0.25, 0.15) + [[(0.54, 0.85), (0.54, 0.0)]]
        strokes.append([(0.54, 0.0), (0.85, 0.25), (0.9, 0.45)])
        return strokes, (0.4, 0.65)
    strokes = filled(0.15, 0.85, 0.14, 0.12) + filled(0.75, 0.75, 0.14, 0.12)
    strokes += [[(0.29, 0.85), (0.29, 0.1)], [(0.89, 0.75), (0.89, 0.0)], [(0.29, 0.1), (0.89, 0.0)]]
    return strokes, (0.8, 1.1)


def umbrella(rng: np.random.Generator) -> Doodle:
    scallops = int(rng.integers(2, 5))
    dome = arc(0.5, 0.45, 0.5, 0.42, 180, 360, 16)
    edge: Stroke = []
    for k in range(scallops):
        x0, x1 = k / scallops, (k + 1) / scallops
        edge += arc((x0 + x1) / 2, 0.45, (x1 - x0) / 2, 0.07, 180, 0, 6)
    handle = [(0.5, 0.45), (0.5, 0.9), *arc(0.4, 0.9, 0.1, 0.1, 0, 180, 6)]
    return [dome + edge[::-1], handle], (0.9, 1.3)


def fish(rng: np.random.Generator) -> Doodle:
    body = arc(0.42, 0.5, 0.4, _u(rng, 0.22, 0.32), 0, 360, 20)
    tail = [(0.8, 0.5), (1.0, _u(rng, 0.15, 0.3)), (1.0, _u(rng, 0.7, 0.85)), (0.8, 0.5)]
    strokes = [body, tail, dot(0.18, 0.44)]
    if rng.random() < 0.5:
        strokes.append(arc(0.32, 0.5, 0.06, 0.16, -60, 60, 6))  # a gill
    if rng.random() < 0.3:
        strokes += [circle(-0.05, 0.25, 0.04, 8), circle(-0.1, 0.08, 0.05, 8)]  # bubbles
    return strokes, (1.4, 2.0)


def house(rng: np.random.Generator) -> Doodle:
    roof = _u(rng, 0.3, 0.45)
    strokes = [[(0.1, roof), (0.1, 1.0), (0.9, 1.0), (0.9, roof)], [(0.0, roof + 0.05), (0.5, 0.0), (1.0, roof + 0.05)]]
    strokes.append([(0.42, 1.0), (0.42, 0.72), (0.58, 0.72), (0.58, 1.0)])  # a door
    if rng.random() < 0.7:  # a window
        x = 0.2 if rng.random() < 0.5 else 0.66
        strokes.append([(x, 0.55), (x + 0.14, 0.55), (x + 0.14, 0.68), (x, 0.68), (x, 0.55)])
    if rng.random() < 0.3:  # a chimney
        strokes.append([(0.72, 0.2), (0.72, 0.05), (0.82, 0.05), (0.82, 0.27)])
    return strokes, (0.8, 1.2)


def heart(rng: np.random.Generator) -> Doodle:
    lobe = _u(rng, 0.22, 0.27)
    outline = [(0.5, 1.0), (0.04, 0.42), *arc(0.5 - lobe, 0.27, lobe, 0.25, 160, 340, 8),
               *arc(0.5 + lobe, 0.27, lobe, 0.25, 200, 380, 8), (0.96, 0.42), (0.5, 1.0)]  # fmt: skip
    strokes = [outline]
    if rng.random() < 0.3:  # an arrow through it
        strokes += [[(-0.15, 0.85), (1.15, 0.15)], [(1.0, 0.13), (1.15, 0.15), (1.1, 0.3)]]
    return strokes, (0.9, 1.25)


def star(rng: np.random.Generator) -> Doodle:
    """A five-pointed star in one stroke (the pentagram children draw), or an outline with 5-8 points."""
    phase = -math.pi / 2 + _u(rng, -0.2, 0.2)
    if rng.random() < 0.5:
        order = [0, 2, 4, 1, 3, 0]
        return [[(0.5 + 0.5 * math.cos(phase + 2 * math.pi * k / 5), 0.5 + 0.5 * math.sin(phase + 2 * math.pi * k / 5))
                 for k in order]], (0.9, 1.1)  # fmt: skip
    points, inner = int(rng.integers(5, 9)), _u(rng, 0.35, 0.55)
    angles = phase + np.arange(2 * points + 1) * math.pi / points
    radii = np.where(np.arange(2 * points + 1) % 2 == 0, 0.5, 0.5 * inner)
    return [[(0.5 + r * math.cos(a), 0.5 + r * math.sin(a)) for r, a in zip(radii, angles)]], (0.9, 1.1)


def stick_figure(rng: np.random.Generator) -> Doodle:
    arms = _u(rng, -0.1, 0.15)
    strokes = [circle(0.5, 0.13, 0.13, 14), [(0.5, 0.26), (0.5, 0.65)]]
    strokes.append([(0.1, 0.4 - arms), (0.5, 0.38), (0.9, 0.4 - arms)])
    strokes.append([(0.2, 1.0), (0.5, 0.65), (0.8, 1.0)])
    return strokes, (0.5, 0.8)


def car(rng: np.random.Generator) -> Doodle:
    body = [(0.0, 0.75), (0.0, 0.45), (0.25, 0.42), (0.35, 0.15), (0.7, 0.15), (0.8, 0.42), (1.0, 0.45), (1.0, 0.75)]
    strokes = [body, [(0.0, 0.75), (0.12, 0.75)], [(0.38, 0.75), (0.62, 0.75)], [(0.88, 0.75), (1.0, 0.75)]]
    strokes += [circle(0.25, 0.8, 0.13, 12), circle(0.75, 0.8, 0.13, 12)]
    if rng.random() < 0.5:
        strokes.append([(0.52, 0.15), (0.52, 0.42)])
    return strokes, (1.5, 2.2)


def boat(rng: np.random.Generator) -> Doodle:
    hull = [(0.0, 0.7), (1.0, 0.7), (0.8, 1.0), (0.2, 1.0), (0.0, 0.7)]
    mast = [(0.5, 0.7), (0.5, 0.0)]
    sail = [(0.5, 0.05), (0.9, 0.6), (0.5, 0.6)]
    strokes = [hull, mast, sail]
    if rng.random() < 0.5:
        strokes.append([(x, 1.1 + 0.04 * math.sin(12 * x)) for x in np.linspace(-0.1, 1.1, 16)])
    return strokes, (0.9, 1.3)


def snowman(rng: np.random.Generator) -> Doodle:
    """Two snowballs are an 8; a snowman has a face, arms and buttons or a hat."""
    strokes = [circle(0.5, 0.25, 0.2, 16), circle(0.5, 0.7, 0.3, 20), dot(0.43, 0.2), dot(0.57, 0.2)]
    strokes += [[(0.22, 0.6), (-0.05, 0.4)], [(0.78, 0.6), (1.05, 0.4)]]
    if rng.random() < 0.5:
        strokes += [dot(0.5, 0.6), dot(0.5, 0.75)]
    else:
        strokes += [[(0.25, 0.06), (0.75, 0.06)], [(0.35, 0.06), (0.35, -0.12), (0.65, -0.12), (0.65, 0.06)]]
    return strokes, (0.6, 0.85)


def balloon(rng: np.random.Generator) -> Doodle:
    string = [(0.5 + 0.06 * math.sin(9 * t), 0.68 + 0.32 * t) for t in np.linspace(0, 1, 14)]
    strokes = [arc(0.5, 0.33, 0.33, 0.33, 0, 360, 20), [(0.45, 0.7), (0.5, 0.64), (0.55, 0.7), (0.45, 0.7)], string]
    # Always a bunch: one oval on a string is a fair 9.
    strokes += [arc(0.12, 0.28, 0.17, 0.2, 0, 360, 14), [(0.12, 0.48), (0.5, 0.98)]]
    if rng.random() < 0.5:
        strokes += [arc(0.88, 0.3, 0.17, 0.2, 0, 360, 14), [(0.88, 0.5), (0.5, 0.98)]]
    return strokes, (0.8, 1.1)


def glasses(rng: np.random.Generator) -> Doodle:
    r = _u(rng, 0.17, 0.22)
    strokes = [circle(0.25, 0.5, r, 14), circle(0.75, 0.5, r, 14), arc(0.5, 0.5, 0.08, 0.06, 200, 340, 6)]
    strokes += [[(0.25 - r, 0.48), (0.0, 0.35)], [(0.75 + r, 0.48), (1.0, 0.35)]]
    return strokes, (2.0, 2.8)


def mountains(rng: np.random.Generator) -> Doodle:
    peaks = int(rng.integers(2, 4))
    xs = np.linspace(0, 1, 2 * peaks + 1)
    ys = [1.0 if k % 2 == 0 else _u(rng, 0.0, 0.5) for k in range(2 * peaks + 1)]
    strokes = [[(float(x), y) for x, y in zip(xs, ys)]]
    if rng.random() < 0.5:
        strokes.append(circle(0.85, 0.1, 0.08, 10))
    return strokes, (1.4, 2.4)


def bug(rng: np.random.Generator) -> Doodle:
    """A spider or a ladybird: a body with legs."""
    strokes = [arc(0.5, 0.55, 0.25, 0.3, 0, 360, 18), circle(0.5, 0.18, 0.1, 10)]
    for side in (-1, 1):
        for y in (0.45, 0.58, 0.72):
            strokes.append([(0.5 + side * 0.24, y), (0.5 + side * 0.48, y - 0.12), (0.5 + side * 0.5, y + 0.08)])
    if rng.random() < 0.5:
        strokes += [[(0.5, 0.27), (0.5, 0.85)], dot(0.4, 0.5), dot(0.6, 0.65)]
    return strokes, (0.9, 1.2)


def apple(rng: np.random.Generator) -> Doodle:
    body = [*arc(0.3, 0.6, 0.3, 0.38, 270, 90, 12), *arc(0.7, 0.6, 0.3, 0.38, 90, -90, 12)]
    strokes = [body, [(0.5, 0.25), (0.55, 0.0)], arc(0.68, 0.1, 0.14, 0.07, 180, 540, 12)]
    return strokes, (0.85, 1.1)


def cup(rng: np.random.Generator) -> Doodle:
    strokes = [[(0.0, 0.2), (0.1, 1.0), (0.7, 1.0), (0.8, 0.2), (0.0, 0.2)], arc(0.82, 0.55, 0.17, 0.2, -80, 80, 8)]
    if rng.random() < 0.6:  # steam
        strokes += [[(x + 0.04 * math.sin(10 * t), 0.12 - 0.25 * t) for t in np.linspace(0, 1, 8)] for x in (0.3, 0.5)]
    return strokes, (0.9, 1.2)


def moon(rng: np.random.Generator) -> Doodle:
    inner = _u(rng, 0.25, 0.4)
    strokes = [[*arc(0.5, 0.5, 0.5, 0.5, 70, 290, 16), *arc(0.5 + inner, 0.5, 0.45, 0.5, 250, 110, 14)]]
    if rng.random() < 0.5:
        strokes += [dot(_u(rng, 0.75, 1.0), _u(rng, 0.1, 0.9)) for _ in range(int(rng.integers(1, 4)))]
    return strokes, (0.55, 0.9)


PICTURES: dict[str, Callable[[np.random.Generator], Doodle]] = {
    "face": face, "animal": animal_face, "sun": sun, "cloud": cloud, "tree": tree, "flower": flower, "note": note,
    "umbrella": umbrella, "fish": fish, "house": house, "heart": heart, "star": star, "stick figure": stick_figure,
    "car": car, "boat": boat, "snowman": snowman, "balloon": balloon, "glasses": glasses, "mountains": mountains,
    "bug": bug, "apple": apple, "cup": cup, "moon": moon,
}  # fmt: skip
