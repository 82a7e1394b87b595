"""A self-supervised auxiliary task for the second design's trials: predict which of four rotations (0, 90, 180,
270 degrees) a digit was turned by, from the classifier's hidden layer.

    python -m training.evaluation.trials --digits data/runs/<run>/digits.pth --only rotation

Hendrycks et al. (2019, "Using self-supervised learning can improve model robustness and uncertainty") report that
this auxiliary loss makes features that know what an upright digit looks like, and so tell near out-of-distribution
inputs apart better. The head lives only while training (the saved model has the same shape and cost as without
it); the not-a-digit score stays the 11th output. Only digits are rotated: a non-digit has no upright to learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.labels import CLASSES
from inference.network import MNISTClassifier

ROTATIONS = 4
ROTATED_PER_BATCH = 64  # digits rotated per batch: half a batch keeps the extra forward pass cheap


class RotationHead(nn.Module):
    """(N, hidden) hidden activations -> (N, 4) logits of the rotation each input was turned by."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, ROTATIONS)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden)


def rotated(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) -> the same images, each turned by a random quarter turn, and the turn (N,) in 0..3."""
    turns = torch.randint(ROTATIONS, (len(images),), generator=generator)
    out = images.clone()
    for k in range(1, ROTATIONS):
        chosen = turns == k
        out[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
    return out, turns


def logits_and_rotation_loss(
    model: MNISTClassifier, head: RotationHead, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's class logits and the rotation loss of up to ROTATED_PER_BATCH of its digits, from one forward
    pass over both: batch norm then sees upright and turned digits in every batch, in training as in its running
    statistics, so no extra pass skews them."""
    digits = x[labels < len(CLASSES)][:ROTATED_PER_BATCH]
    turned, turns = rotated(digits, generator)
    both = torch.cat([x, turned.contiguous(memory_format=torch.channels_last)])
    hidden = model.classifier[:-1](model.features((both - model.mean) / model.std))  # (N + n, hidden)
    logits = model.classifier[-1](hidden[: len(x)]) / model.temperature
    loss = F.cross_entropy(head(hidden[len(x) :]), turns.to(x.device))
    return logits, loss
