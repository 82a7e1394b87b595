"""Model and inference helpers shared by the app, the trainer and the tests.

One source of truth for: the CNN (`MNISTClassifier`), the MNIST normalisation constants, the checkpoint format,
and the preprocessing that turns a canvas drawing, an upload or a photo into an MNIST-style 28x28 input.

    python -c "import utils; print(utils.load_model())"   # loads models/model.pth

The app imports this module and never imports train.py or torchvision.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence
from torch import nn

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = PROJECT_DIR / "models" / "model.pth"

# MNIST normalisation (mean/std of the training pixels in [0, 1]); stored in the checkpoint and applied inside the
# model, so callers feed plain [0, 1] images.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CLASSES: tuple[int, ...] = tuple(range(10))
NOT_DIGIT = len(CLASSES)  # the 11th output: letters, shapes, scribbles, several digits

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

# Upload limits: a few MB of file, and a pixel budget that stops decompression bombs before they decode.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_PIXELS = 25_000_000
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


class EmptyDrawingError(ValueError):
    """There is nothing (or too little) to read: never guess a digit from it."""


class ModelLoadError(RuntimeError):
    """The checkpoint is missing, corrupt or does not fit the model class."""


class MNISTClassifier(nn.Module):
    """A small VGG-style CNN: five 3x3 conv layers with batch norm in three stages, then a dropout classifier.

    Input (N, 1, 28, 28) in [0, 1], white ink on black; output (N, 10) logits, or (N, 11) when the model also
    learnt "not a digit" (index 10, `NOT_DIGIT`). Normalisation happens here, with the
    mean/std the checkpoint carries, so no caller can forget or duplicate it. One conv at full resolution and the
    depth at 14x14 and 7x7 keeps it fast on a CPU (~0.8 ms per image, one thread).
    """

    mean: torch.Tensor  # buffers, saved in the state_dict
    std: torch.Tensor

    def __init__(
        self,
        channels: tuple[int, int, int] = (32, 48, 96),
        hidden: int = 128,
        dropout: float = 0.3,
        mean: float = MNIST_MEAN,
        std: float = MNIST_STD,
        num_classes: int = len(CLASSES),
        reject_threshold: float = 0.5,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "channels": list(channels),
            "hidden": hidden,
            "dropout": dropout,
            "mean": mean,
            "std": std,
            "num_classes": num_classes,
            "reject_threshold": reject_threshold,
            "temperature": temperature,
        }
        if num_classes not in (len(CLASSES), len(CLASSES) + 1):
            raise ValueError(f"num_classes must be 10 (digits) or 11 (digits + not a digit), got {num_classes}")
        # With an 11th class, an input is called "not a digit" when that class's probability reaches this (chosen on
        # a validation split by train.py and stored in the checkpoint's config).
        self.reject_threshold = reject_threshold
        # Logits are divided by this (fitted on validation by calibration.py after training; 1 while training), so
        # the confidences a user reads are as often right as they say: label smoothing alone leaves them too low.
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        c1, c2, c3 = channels

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(1, c1), nn.MaxPool2d(2),  # (N, c1, 14, 14)
            *conv(c1, c2), *conv(c2, c2), nn.MaxPool2d(2),  # (N, c2, 7, 7)
            *conv(c2, c3), *conv(c3, c3), nn.MaxPool2d(2),  # (N, c3, 3, 3)
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c3 * 3 * 3, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        logits = self.classifier(self.features(x))
        return logits if self.temperature == 1.0 else logits / self.temperature

    def set_calibration(self, temperature: float | None = None, reject_threshold: float | None = None) -> None:
        """Set what calibration.py chose on validation; the config (saved in the checkpoint) follows."""
        if temperature is not None:
            self.temperature = self.config["temperature"] = float(temperature)
        if reject_threshold is not None:
            self.reject_threshold = self.config["reject_threshold"] = float(reject_threshold)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def knows_not_digit(model: nn.Module) -> bool:
    """Whether the model has the 11th output, "not a digit" (checkpoints from before it have ten)."""
    config = getattr(model, "config", {})
    return int(config.get("num_classes", len(CLASSES))) > len(CLASSES)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model with the metadata (evidence) stored beside its weights."""

    model: MNISTClassifier
    meta: dict[str, Any]
    path: Path
    version: str  # first 12 hex digits of the file's sha256: what the predictions log records


@dataclass(frozen=True)
class Prediction:
    """One classification: the best digit, its probability, all ten (summing to 1), the 28x28 input the model saw,
    and whether it looks like a digit at all (`not_digit_score`: the model's probability that it is not one)."""

    digit: int
    confidence: float
    probabilities: list[float]
    model_input: np.ndarray  # (28, 28) float32 in [0, 1]
    is_digit: bool = True
    not_digit_score: float = 0.0

    @property
    def png(self) -> bytes:
        return to_png(self.model_input)


def save_checkpoint(model: MNISTClassifier, meta: dict[str, Any], path: str | Path) -> None:
    """Write weights + architecture config + metadata: everything `load_checkpoint` needs, nothing pickled."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": dict(model.config), "meta": meta}, Path(path))


def load_checkpoint(model_path: str | Path = DEFAULT_MODEL_PATH) -> Checkpoint:
    """Load a checkpoint safely (`weights_only=True`) into an eval-mode model, or raise `ModelLoadError`."""
    path = Path(model_path)
    fix = "Run `make train` to create it (or `git checkout models/model.pth` to restore the shipped one)."
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} not found. {fix}")
    try:
        blob = path.read_bytes()
        raw = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip error means the file is not a usable checkpoint
        raise ModelLoadError(f"Model file {path} is corrupt or not a PyTorch checkpoint ({exc}). {fix}") from exc
    if not isinstance(raw, dict) or not {"state_dict", "config"} <= raw.keys():
        raise ModelLoadError(f"Model file {path} is not an MNISTClassifier checkpoint (no state_dict/config). {fix}")
    try:
        config = dict(raw["config"])
        config["channels"] = tuple(config["channels"])
        model = MNISTClassifier(**config)
        model.load_state_dict(raw["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"Model file {path} does not fit MNISTClassifier ({exc}). {fix}") from exc
    model.eval()
    # Channels-last is ~25% faster for single-image CPU inference here (0.58 vs 0.78 ms, tests/benchmark.py).
    model = model.to(memory_format=torch.channels_last)
    version = hashlib.sha256(blob).hexdigest()[:12]
    return Checkpoint(model=model, meta=dict(raw.get("meta", {})), path=path, version=version)


def load_model(model_path: str | Path = DEFAULT_MODEL_PATH) -> torch.nn.Module:
    """The trained classifier in eval mode; raises `ModelLoadError` naming the file and the fix."""
    return load_checkpoint(model_path).model


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


def preprocess_image(image_data: np.ndarray | Image.Image) -> np.ndarray:
    """Turn a drawing or photo into a float32 (28, 28) image in [0, 1], white digit on black, MNIST-normalised.

    Accepts the canvas's RGBA array (opaque black background and white strokes, or transparent background with the
    strokes in alpha), and RGB/greyscale photos of dark ink on light paper, any size. The ink is cropped, fitted into
    a 20x20 box keeping its aspect ratio (anti-aliased) and placed so its centre of mass is at the field's centre.
    Raises `EmptyDrawingError` when there is no digit to read, `ValueError` for input that is not an image.
    """
    arr, top = _pixels(image_data)
    ink = _downscale(_ink_map(arr, top), WORK_SIDE)
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    background = float(np.median(border))
    span = float(ink.max()) - background
    if span < MIN_CONTRAST:
        raise EmptyDrawingError("Draw a digit first: the image has no visible ink.")
    # Ink is what stands above the background by more than the noise floor (paper texture, JPEG noise).
    mask = ink > background + NOISE_FLOOR * span
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


def convert_to_tensor(image_array: np.ndarray) -> torch.Tensor:
    """(28, 28) float image in [0, 1] -> (1, 1, 28, 28) float32 tensor (normalisation happens inside the model)."""
    arr = np.asarray(image_array, dtype=np.float32)
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"Expected a ({IMAGE_SIZE}, {IMAGE_SIZE}) image, got shape {arr.shape}.")
    tensor = torch.from_numpy(np.ascontiguousarray(arr)).reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return tensor.contiguous(memory_format=torch.channels_last)  # the layout the loaded model runs fastest in


def get_confidence_scores(output_tensor: torch.Tensor) -> list[float]:
    """Logits (10 or 11,) or (1, 10 or 11) -> the 10 digit probabilities (softmax over the digits), summing to 1."""
    logits = output_tensor.detach().reshape(1, -1)[0, : len(CLASSES)].double()
    return [float(p) for p in F.softmax(logits, dim=0)]


def not_digit_score(output_tensor: torch.Tensor) -> float:
    """The probability of "not a digit" (0.0 for a model without that class)."""
    logits = output_tensor.detach().reshape(1, -1)[0].double()
    return float(F.softmax(logits, dim=0)[NOT_DIGIT]) if logits.numel() > NOT_DIGIT else 0.0


def predict_probabilities(model: nn.Module, tensor: torch.Tensor) -> list[float]:
    """Run the model once (no autograd) and return the 10 digit probabilities."""
    with torch.inference_mode():
        return get_confidence_scores(model(tensor))


def predict_digit(model: nn.Module, tensor: torch.Tensor) -> tuple[int, float]:
    """(predicted digit, its probability) for a (1, 1, 28, 28) tensor."""
    probs = predict_probabilities(model, tensor)
    digit = int(np.argmax(probs))
    return digit, probs[digit]


def classify(model: nn.Module, image_data: np.ndarray | Image.Image) -> Prediction:
    """Preprocess + predict in one call (raises `EmptyDrawingError` for nothing to read). `is_digit` is False when the
    model's "not a digit" probability reaches the threshold its checkpoint carries; `digit` is still the best guess."""
    model_input = preprocess_image(image_data)
    with torch.inference_mode():
        logits = model(convert_to_tensor(model_input))
    probabilities = get_confidence_scores(logits)
    digit = int(np.argmax(probabilities))
    score = not_digit_score(logits)
    is_digit = score < float(getattr(model, "reject_threshold", 1.0)) or logits.shape[-1] <= NOT_DIGIT
    return Prediction(digit, probabilities[digit], probabilities, model_input, bool(is_digit), score)


def format_confidence(probability: float) -> str:
    """A probability as the page shows it: 97.3%, 99.97% near the top, never a rounded-up 100% short of certainty."""
    if probability < 0.995:
        return f"{probability:.1%}"
    if probability < 1.0 and round(probability * 100, 2) >= 100.0:
        return ">99.99%"
    return f"{probability:.2%}"


def to_png(image_array: np.ndarray) -> bytes:
    """The 28x28 model input as a greyscale PNG (what the log stores and the page shows)."""
    pixels = (np.clip(np.asarray(image_array, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def load_uploaded_image(data: bytes) -> Image.Image:
    """Decode an uploaded PNG/JPEG/GIF (first frame)/BMP/WebP with size and decompression-bomb guards.

    Raises `ValueError` with a message a user can act on for anything else: empty, not an image, an unsupported
    format, truncated, too many bytes or pixels.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"Expected the uploaded file's bytes, got {type(data).__name__}.")
    size = len(data)
    if size == 0:
        raise ValueError("The uploaded file is empty.")
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"The file is too large ({size / 1e6:.1f} MB); the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)), formats=list(UPLOAD_FORMATS))
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise ValueError(
                    f"The image is too large ({image.width}x{image.height} pixels); "
                    f"the limit is {MAX_UPLOAD_PIXELS / 1e6:.0f} megapixels."
                )
            frame = next(ImageSequence.Iterator(image)).copy()  # first frame of a GIF/WebP animation
            frame.load()
    except ValueError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"The image is too large to open safely ({exc}).") from exc
    except Exception as exc:  # PIL raises many types for bad files (UnidentifiedImageError, OSError, SyntaxError…)
        raise ValueError(
            "The file is not a readable image (use PNG, JPEG, GIF, BMP or WebP; it may be truncated)."
        ) from exc
    if frame.width == 0 or frame.height == 0:
        raise ValueError("The image has no pixels.")
    return frame
