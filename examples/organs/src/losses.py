"""Loss functions of this project."""

import torch
from torch import nn


class CombinedLoss(nn.Module):
    """Soft Dice plus cross-entropy, on logits with one independent channel per organ.

    Dice counts every organ equally however small (the chiasm is a few voxels), cross-entropy
    keeps the gradients smooth early on. Cross-entropy is binary, per channel, because the
    organs are separate channels rather than classes of one softmax.

    Args:
        dice_weight, ce_weight: weights of the two terms.
        smooth: added to Dice's numerator and denominator (an empty organ scores 1, not 0/0).
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5):
        super().__init__()
        self.dice_weight, self.ce_weight, self.smooth = dice_weight, ce_weight, smooth
        self.cross_entropy = nn.BCEWithLogitsLoss()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probability = torch.sigmoid(prediction)
        dims = tuple(range(2, prediction.dim()))  # per item and organ
        overlap = (probability * target).sum(dims)
        total = probability.sum(dims) + target.sum(dims)
        dice = (2 * overlap + self.smooth) / (total + self.smooth)
        return self.dice_weight * (1 - dice.mean()) + self.ce_weight * self.cross_entropy(prediction, target)
