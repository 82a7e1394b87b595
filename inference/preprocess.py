"""Preprocessing: any canvas drawing, upload or photo -> MNIST-style (28, 28) float32 in [0, 1], white ink on black
(the bytes are decoded before this, by inference/images.py).

    python -c "import numpy as np; from inference.preprocess import preprocess_image; \
print(preprocess_image(np.eye(280, dtype=np.uint8) * 255).shape)"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# MNIST geometry: the ink is fitted into a 20x20 box (aspect ratio kept), then placed in a 28x28 field so that its
# centre of mass sits at the centre.
IMAGE_SIZE = 28
DIGIT_BOX = 20
# Where MNIST puts the centre of mass, in pixel-index coordinates (row, col): measured on the 10k test digits as
# 13.99 / 14.01 (std 0.29), i.e. the classic recipe's shift to (14, 14).
CENTRE_OF_MASS = (14.0, 14.0)

# Preprocessing thresholds (fractions of the image's ink range / shorter side).
MIN_CONTRAST = 0.15  # ink must differ from the background by this much, else nothing is drawn
NOISE_FLOOR = 0.2  # ink below this after contrast stretching is paper texture or JPEG noise
MIN_EXTENT = 0.06  # a mark whose longest side is shorter than this fraction of the image is a dot, not a digit
MAX_SIDE = 8192  # larger arrays are refused, not resized (memory)
WORK_SIDE = 1024  # larger images are downscaled to this before cropping (speed; a digit needs far less)


class EmptyDrawingError(ValueError):
    """There is nothing (or too little) to read: never guess a digit from it."""


# --------------------------------------------------------------------------------------------------------------
# Preprocessing: any drawing or photo -> MNIST-style (28, 28) float32 in [0, 1], white ink on black.


LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luminance, as PIL's convert("L")


def _pixels(image_data: np.ndarray | Image.Image) -> tuple[np.ndarray, float]:
    """The validated pixel array, (H, W) or (H, W, C) with C in {1, 2, 3, 4}, in its own dtype, and the value that
    means full intensity. Nothing is converted yet: a 280x280 RGBA canvas is 313k values, and only some are needed."""
    if isinstance(image_data, Image.Image):
        image = image_data
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(image, dtype=np.float32)
            return arr, max(float(arr.max()) if arr.size else 1.0, 1.0)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
        elif image.mode != "L":
            image = image.convert("RGB")
        return np.asarray(image), 255.0
    if not isinstance(image_data, np.ndarray):
        raise ValueError(f"Expected an image array or PIL image, got {type(image_data).__name__}.")
    arr = image_data
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"Image must be (H, W) or (H, W, 1|2|3|4); got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmptyDrawingError("The image is empty (zero pixels).")
    if max(arr.shape[:2]) > MAX_SIDE:
        raise ValueError(f"Image is too large ({arr.shape[1]}x{arr.shape[0]}); the limit is {MAX_SIDE} per side.")
    if arr.dtype == np.bool_:
        return arr.view(np.uint8), 1.0
    if arr.dtype == np.uint8:
        return arr, 255.0
    if np.issubdtype(arr.dtype, np.integer):
        return arr, 255.0 if int(arr.max()) <= 255 else 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("Image array contains NaN or infinite values.")
        return arr, 1.0 if float(arr.max()) <= 1.0 else 255.0  # floats come as [0, 1] or [0, 255]
    raise ValueError(f"Image array has unsupported dtype {arr.dtype}; expected integers or floats.")


def _unit(plane: np.ndarray, top: float) -> np.ndarray:
    """A plane as float32 in [0, 1]."""
    if plane.dtype != np.uint8:
        plane = np.clip(plane, 0, top)  # before the float32 cast: negative or huge values must not wrap or overflow
    return plane.astype(np.float32) * np.float32(1.0 / top)


def _ink_map(arr: np.ndarray, top: float) -> np.ndarray:
    """(H, W) float32 ink intensity, oriented so the background is low (invert by the background, not a rule)."""
    full = arr
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = arr[..., -1]
        if float(alpha.min()) < 0.99 * top:
            # Transparent background: the strokes live in alpha (the canvas without a background, ink PNGs).
            return _unit(alpha, top)
        arr = arr[..., :-1]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.dtype == np.uint8 and full.shape[2] in (3, 4):
        # PIL's RGB(A) -> L uses the same weights, ignores alpha, and is ~5x faster; give it the original array
        # (slicing alpha off first would cost a 0.4 ms copy).
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(full)).convert("L"))
    elif arr.ndim == 3:
        arr = np.clip(arr, 0, top).astype(np.float32) @ LUMA
    grey = _unit(arr, top)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    # Dark ink on light paper (photos, scans) has a light border: invert so ink is high.
    return np.subtract(1.0, grey, out=grey) if float(np.median(border)) > 0.5 else grey


def _downscale(ink: np.ndarray, max_side: int) -> np.ndarray:
    h, w = ink.shape
    if max(h, w) <= max_side:
        return ink
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BOX))


@dataclass(frozen=True)
class Ink:
    """A drawing's ink, read once: the ink map (downscaled past WORK_SIDE), where the ink is, the background's level
    and the ink's span above it. `preprocess_image` fits it into MNIST's field; inference.number splits it."""

    ink: np.ndarray
    mask: np.ndarray
    background: float
    span: float

    @property
    def level(self) -> np.ndarray:
        """(H, W) float32 ink in [0, 1] with the background at 0."""
        return np.clip((self.ink - self.background) / self.span, 0.0, 1.0).astype(np.float32)


def read_ink(image_data: np.ndarray | Image.Image) -> Ink:
    """The drawing's ink (see `Ink`); EmptyDrawingError when there is none, ValueError for input that is not an
    image."""
    arr, top = _pixels(image_data)
    ink = _downscale(_ink_map(arr, top), WORK_SIDE)
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    background = float(np.median(border))
    span = float(ink.max()) - background
    if span < MIN_CONTRAST:
        raise EmptyDrawingError("Draw a digit first: the image has no visible ink.")
    # Ink is what stands above the background by more than the noise floor (paper texture, JPEG noise).
    return Ink(ink, ink > background + NOISE_FLOOR * span, background, span)


def preprocess_image(image_data: np.ndarray | Image.Image) -> np.ndarray:
    """Turn a drawing or photo into a float32 (28, 28) image in [0, 1], white digit on black, MNIST-normalised.

    Accepts the canvas's RGBA array (opaque black background and white strokes, or transparent background with the
    strokes in alpha), and RGB/greyscale photos of dark ink on light paper, any size. The ink is cropped, fitted into
    a 20x20 box keeping its aspect ratio (anti-aliased) and placed so its centre of mass is at the field's centre.
    Raises `EmptyDrawingError` when there is no digit to read, `ValueError` for input that is not an image.
    """
    return fit_ink(read_ink(image_data))


def fit_ink(read: Ink) -> np.ndarray:
    """`preprocess_image` from ink already read: the (28, 28) model input."""
    ink, mask, background, span = read.ink, read.mask, read.background, read.span
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise EmptyDrawingError("Draw a digit first: the image has no visible ink.")
    top_row, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    extent = max(bottom - top_row, right - left)
    if extent < max(2, MIN_EXTENT * min(ink.shape)):
        raise EmptyDrawingError("Too little ink to be a digit: draw the whole digit, larger.")
    # Stretch the crop only: background -> 0, strongest ink -> 1, the noise floor cut off.
    crop = (ink[top_row:bottom, left:right] - background) / span
    crop = np.clip((crop - NOISE_FLOOR) / (1.0 - NOISE_FLOOR), 0.0, 1.0).astype(np.float32)

    # Fit into DIGIT_BOX x DIGIT_BOX keeping the aspect ratio; LANCZOS gives the anti-aliased grey edges MNIST has.
    scale = DIGIT_BOX / extent
    new_w = max(1, round(crop.shape[1] * scale))
    new_h = max(1, round(crop.shape[0] * scale))
    patch = Image.fromarray(crop, mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(patch, dtype=np.float32), 0.0, 1.0)

    # Place it so the centre of mass lands on MNIST's, keeping the whole box inside the field.
    mass = float(digit.sum())
    if mass <= 0.0:
        raise EmptyDrawingError("Too little ink to be a digit: draw the whole digit, larger.")
    com_y = float(digit.sum(axis=1) @ np.arange(new_h, dtype=np.float32)) / mass
    com_x = float(digit.sum(axis=0) @ np.arange(new_w, dtype=np.float32)) / mass
    off_y = int(np.clip(round(CENTRE_OF_MASS[0] - com_y), 0, IMAGE_SIZE - new_h))
    off_x = int(np.clip(round(CENTRE_OF_MASS[1] - com_x), 0, IMAGE_SIZE - new_w))
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    out[off_y : off_y + new_h, off_x : off_x + new_w] = digit
    return out
