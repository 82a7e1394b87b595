"""One classification: preprocess, run the model once, and the page's reading of the result.

python -c "import numpy as np, utils; print(utils.classify(utils.load_model(), np.eye(280) * 255))"
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from inference.labels import CLASSES, NOT_DIGIT
from inference.preprocess import IMAGE_SIZE, preprocess_image


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


def classify(model: nn.Module, image_data: np.ndarray | Image.Image) -> Prediction:
    """Preprocess + predict in one call (raises `EmptyDrawingError` for nothing to read). `is_digit` is False when the
    model's "not a digit" probability reaches the threshold its checkpoint carries; `digit` is still the best guess."""
    return read_input(model, preprocess_image(image_data))


def read_input(model: nn.Module, model_input: np.ndarray) -> Prediction:
    """`classify` of an input already preprocessed: one forward pass."""
    with torch.inference_mode():
        logits = model(convert_to_tensor(model_input))
    return prediction_from(model, logits, model_input)


def prediction_from(model: nn.Module, logits: torch.Tensor, model_input: np.ndarray) -> Prediction:
    """The model's answer for one input from its logits, (C,) or (1, C): the best digit and the ten probabilities,
    and "not a digit" when that probability reaches the threshold the checkpoint carries."""
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
