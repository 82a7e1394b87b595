"""One door for every image the app reads: the canvas's drawing and an uploaded file go through `decode_image`,
bounded before anything is decoded, and come out upright, in a mode everything downstream can handle.

    python -c "from inference.images import load_uploaded_image as l; print(l(open('photo.jpg', 'rb').read()))"

1. The bytes are counted, the format is one of `FORMATS` (sniffed, not taken from the name), and the size in the
   header is checked (pixels and the longer side) before a single pixel is decoded; the canvas has limits of its
   own that fit a 280x280 canvas at any device pixel ratio.
2. The caller holds a slot of the admission gate (inference/admission.py) around the decode and the answer, so a
   burst cannot stack their memory.
3. The first frame is decoded, turned upright by its EXIF orientation (a phone's portrait photo), shrunk to
   `WORK_SIDE` at most (the model needs far less), and normalised to L, RGB or RGBA (16-bit, palette, CMYK, 1-bit).

Every refusal is a ValueError whose message a user can act on; the page shows `preview`, never the original.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
WORK_SIDE = 2048  # decoded images are shrunk to this longer side at most: preprocessing works at 1024
PREVIEW_SIDE = 320


class ImageRefused(ValueError):
    """An image this app will not read, with the reason in the user's words."""


@dataclass(frozen=True)
class ImageLimits:
    """What one kind of image may be: bytes, pixels, the longer side, and what to call it in a message."""

    max_bytes: int
    max_pixels: int
    max_side: int
    what: str


UPLOAD = ImageLimits(5 * 1024 * 1024, 25_000_000, 8192, "file")
# The canvas is 280x280 CSS pixels; a device pixel ratio of 4 makes it 1120x1120. Anything much larger is not a
# drawing from this page.
CANVAS = ImageLimits(2 * 1024 * 1024, 4_000_000, 2048, "drawing")
MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, UPLOAD_FORMATS = UPLOAD.max_bytes, UPLOAD.max_pixels, FORMATS
# The file names the upload field offers: every extension Pillow reads as one of FORMATS (.jpg, .jpeg, .jfif, ...).
UPLOAD_EXTENSIONS = tuple(sorted(ext[1:] for ext, name in Image.registered_extensions().items() if name in FORMATS))


def _check_header(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageRefused("The image has no pixels.")
    if width * height > limits.max_pixels:
        raise ImageRefused(
            f"The image is too large ({width}x{height} pixels); the limit is {limits.max_pixels / 1e6:g} megapixels."
        )
    if max(width, height) > limits.max_side:
        raise ImageRefused(
            f"The image is too long or too thin ({width}x{height} pixels); each side may be at most "
            f"{limits.max_side} pixels."
        )


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """The first frame, decoded, after the header passed the limits."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            _check_header(image, limits)
            image.seek(0)  # the first frame of a GIF/WebP animation, decoded in place (a copy would double it)
            image.load()
    except ImageRefused:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRefused("The image is too large to open safely.") from None
    except Exception:  # Pillow raises many types, its own words included (UnidentifiedImageError, OSError, ...)
        raise ImageRefused(
            f"The {limits.what} is not a readable image (use PNG, JPEG, GIF, BMP or WebP; it may be truncated)."
        ) from None
    return image


def normalise(image: Image.Image) -> Image.Image:
    """Upright (EXIF orientation), at most WORK_SIDE on its longer side, and in L, RGB or RGBA."""
    ImageOps.exif_transpose(image, in_place=True)  # in place: an upright image is not copied
    factor = math.ceil(max(image.size) / WORK_SIDE)
    if factor > 1:
        image = image.reduce(factor)  # a box filter, in one pass: memory drops before anything else runs
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = max(float(values.max()) if values.size else 1.0, 1.0)
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def decode_image(data: bytes, limits: ImageLimits = UPLOAD) -> Image.Image:
    """Decode `data` within `limits` (see the module's docstring); ValueError with the reason otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"Expected the {limits.what}'s bytes, got {type(data).__name__}.")
    size = len(data)
    if size == 0:
        raise ValueError(f"The {limits.what} is empty.")
    if size > limits.max_bytes:
        raise ValueError(
            f"The {limits.what} is too large ({size / 1e6:.1f} MB); the limit is {limits.max_bytes / 1e6:.0f} MB."
        )
    return normalise(_open(bytes(data), limits))


# Bytes per pixel and band as decoded (16-bit and float modes take more), and what every request costs besides its
# decoded pixels (the shrunk copy, preprocessing at 1024, the model, the answer's images), measured by
# `make bench-burst`: the decode, its shrunk copy and the conversions come to about 1.5x the decoded frame.
DECODED_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}
WORKING_COPIES = 1.5
BASE_MB = 2.0


def working_memory_mb(data: bytes) -> float:
    """What reading and answering the image `data` may take, in MB, from its header alone (nothing is decoded):
    the admission gate's measure (inference/admission.py). Bytes no format accepts cost the base: the decoder
    refuses them at once."""
    try:
        with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
            width, height = image.size
            per_pixel = len(image.getbands()) * DECODED_BYTES.get(image.mode, 1)
    except Exception:  # unreadable, truncated or not an image: decode_image says why, in the user's words
        return BASE_MB
    return BASE_MB + WORKING_COPIES * width * height * per_pixel / 1e6


# The first bytes of each format in FORMATS (what a client sending something else is told: 415, not 400).
SIGNATURES = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "WEBP": (b"RIFF",),  # and "WEBP" at offset 8
}


def sniff_format(data: bytes) -> str | None:
    """Which of FORMATS the bytes begin like, or None: a cheap look before anything is decoded."""
    head = bytes(data[:16])
    for name, signatures in SIGNATURES.items():
        if head.startswith(signatures) and (name != "WEBP" or head[8:12] == b"WEBP"):
            return name
    return None


def load_uploaded_image(data: bytes) -> Image.Image:
    """An uploaded PNG/JPEG/GIF (first frame)/BMP/WebP, within the upload limits."""
    return decode_image(data, UPLOAD)


def load_canvas_image(data: bytes) -> Image.Image:
    """The canvas's drawing as the browser sent it, within the canvas's limits."""
    return decode_image(data, CANVAS)


def preview(image: Image.Image, side: int = PREVIEW_SIDE) -> Image.Image:
    """A small copy for the page to show (the original is never encoded again at full size)."""
    small = image.copy()
    small.thumbnail((side, side))
    return small
