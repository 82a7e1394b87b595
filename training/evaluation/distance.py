"""A second not-a-digit score from the model's feature space: how far an input's features lie from every digit class
(the Mahalanobis distance of Lee et al. 2018, with one covariance shared by the classes).

    python -m training.evaluation.leave_out --digits data/runs/<run>/digits.pth  # vs the 11th output, per fold

The features are the dense hidden layer's (N, hidden) activations. The class means and the shared precision come
from training digits; the score of an input is its squared distance to the nearest class mean. `combined` joins it
to the 11th output by calibrating both on validation digits (each score's share of validation digits below it) and
taking the larger: flag when either score is rarer than almost every digit's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.labels import CLASSES
from inference.network import MNISTClassifier

BATCH = 1_000
SHRINK = 1e-3  # ridge on the covariance (relative to its mean variance): a few directions carry no digit variance


@torch.inference_mode()
def features(model: MNISTClassifier, images: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) -> (N, hidden) activations before the last linear layer (eval mode: dropout off)."""
    model.eval()
    body = model.classifier[:-1]
    out = []
    for start in range(0, len(images), BATCH):
        x = (images[start : start + BATCH] - model.mean) / model.std
        out.append(body(model.features(x)).double().numpy())
    return np.concatenate(out)


@dataclass
class Distance:
    """Class means (10, hidden) and the shared precision (hidden, hidden) of training digits' features."""

    means: np.ndarray
    precision: np.ndarray

    def score(self, feats: np.ndarray) -> np.ndarray:
        """(N, hidden) -> (N,) squared Mahalanobis distance to the nearest digit class."""
        best = np.full(len(feats), np.inf)
        for mean in self.means:
            delta = feats - mean
            best = np.minimum(best, np.einsum("nh,hk,nk->n", delta, self.precision, delta))
        return best


def fit_distance(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> Distance:
    feats, y = features(model, images), labels.numpy()
    means = np.stack([feats[y == c].mean(axis=0) for c in range(len(CLASSES))])
    centred = feats - means[y]
    covariance = centred.T @ centred / len(feats)
    covariance += SHRINK * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    return Distance(means, np.linalg.inv(covariance))


def rank_against(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's share of `reference` (validation digits' scores) strictly below it: 0..1, higher is rarer."""
    ordered = np.sort(reference)
    return np.searchsorted(ordered, values, side="left") / len(ordered)


def combined(references: tuple[np.ndarray, np.ndarray], scores: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The larger of the two calibrated scores: (11th-output probability, distance), each ranked against the
    validation digits' own."""
    return np.maximum(rank_against(references[0], scores[0]), rank_against(references[1], scores[1]))
