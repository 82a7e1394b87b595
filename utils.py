"""The app's door to inference: load the model, classify a drawing or an upload, show the answer.

    python -c "import utils; print(utils.load_model())"   # loads models/model.pth

The work lives in inference/ (canvas: the drawing surface's size and pens; network: the CNN and its checkpoints;
images: decoding uploads and drawings; preprocess: any image -> MNIST's 28x28 input; predict: one classification;
number: several digits side by side read as a number).
This façade is inference's door for the entry points, the tools and outside users; packages import inference/.
The app imports this module and never imports training/ or torchvision.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inference.admission import Busy, admitted
from inference.canvas import CANVAS_SIZE, DEFAULT_PEN_WIDTH, PEN_WIDTH_STEP, PEN_WIDTHS
from inference.labels import CLASSES, NOT_DIGIT
from inference.network import (
    DEFAULT_MODEL_PATH,
    MNIST_MEAN,
    MNIST_STD,
    Checkpoint,
    MNISTClassifier,
    ModelLoadError,
    knows_not_digit,
    load_checkpoint,
)
from inference.predict import (
    Prediction,
    classify,
    convert_to_tensor,
    format_confidence,
    get_confidence_scores,
    to_png,
)
from inference.number import NumberReading, read_number
from inference.images import (
    MAX_UPLOAD_BYTES,
    UPLOAD_EXTENSIONS,
    load_canvas_image,
    load_uploaded_image,
    preview,
)
from inference.preprocess import EmptyDrawingError, preprocess_image

__all__ = [
    "Busy",
    "CANVAS_SIZE",
    "CLASSES",
    "DEFAULT_PEN_WIDTH",
    "DEFAULT_MODEL_PATH",
    "MAX_UPLOAD_BYTES",
    "MNIST_MEAN",
    "MNIST_STD",
    "NOT_DIGIT",
    "PEN_WIDTHS",
    "PEN_WIDTH_STEP",
    "UPLOAD_EXTENSIONS",
    "Checkpoint",
    "EmptyDrawingError",
    "MNISTClassifier",
    "ModelLoadError",
    "NumberReading",
    "Prediction",
    "admitted",
    "classify",
    "convert_to_tensor",
    "format_confidence",
    "get_confidence_scores",
    "knows_not_digit",
    "load_checkpoint",
    "load_model",
    "load_canvas_image",
    "load_uploaded_image",
    "preprocess_image",
    "preview",
    "read_number",
    "to_png",
]


def load_model(model_path: str | Path = DEFAULT_MODEL_PATH) -> torch.nn.Module:
    """The trained classifier in eval mode, its batch norms folded for serving; raises `ModelLoadError` naming the
    file and the fix."""
    return load_checkpoint(model_path, fused=True).model
