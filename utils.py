"""The app's door to inference: load the model, classify a drawing or an upload, show the answer.

    python -c "import utils; print(utils.load_model())"   # loads models/model.pth

The work lives in inference/ (network: the CNN and its checkpoints; preprocess: any image -> MNIST's 28x28 input;
predict: one classification). This façade keeps the names the app, the page tests and the tools have always used.
The app imports this module and never imports training/ or torchvision.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inference.labels import CLASSES, NOT_A_DIGIT, NOT_DIGIT
from inference.network import (
    DEFAULT_MODEL_PATH,
    MNIST_MEAN,
    MNIST_STD,
    PROJECT_DIR,
    Checkpoint,
    MNISTClassifier,
    ModelLoadError,
    count_parameters,
    knows_not_digit,
    load_checkpoint,
    save_checkpoint,
)
from inference.predict import (
    Prediction,
    classify,
    convert_to_tensor,
    format_confidence,
    get_confidence_scores,
    not_digit_score,
    to_png,
)
from inference.images import (
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    UPLOAD_FORMATS,
    load_canvas_image,
    load_uploaded_image,
    preview,
)
from inference.preprocess import IMAGE_SIZE, EmptyDrawingError, preprocess_image

__all__ = [
    "CLASSES",
    "DEFAULT_MODEL_PATH",
    "IMAGE_SIZE",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "MNIST_MEAN",
    "MNIST_STD",
    "NOT_A_DIGIT",
    "NOT_DIGIT",
    "PROJECT_DIR",
    "UPLOAD_FORMATS",
    "Checkpoint",
    "EmptyDrawingError",
    "MNISTClassifier",
    "ModelLoadError",
    "Prediction",
    "classify",
    "convert_to_tensor",
    "count_parameters",
    "format_confidence",
    "get_confidence_scores",
    "knows_not_digit",
    "load_checkpoint",
    "load_model",
    "load_canvas_image",
    "load_uploaded_image",
    "not_digit_score",
    "preprocess_image",
    "preview",
    "save_checkpoint",
    "to_png",
]


def load_model(model_path: str | Path = DEFAULT_MODEL_PATH) -> torch.nn.Module:
    """The trained classifier in eval mode, its batch norms folded for serving; raises `ModelLoadError` naming the
    file and the fix."""
    return load_checkpoint(model_path, fused=True).model
