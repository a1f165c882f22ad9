"""Built-in losses."""

import torch
from torch import nn


class DiceBCELoss(nn.Module):
    """Soft Dice plus binary cross-entropy, both on logits, one channel per label.

    Binary (not softmax) cross-entropy because labels are independent channels
    that need not cover every voxel (the seed's label layout).

    Args:
        dice_weight / bce_weight: weights of the two terms.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0):
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True)
        self.bce = nn.BCEWithLogitsLoss()
        self.dice_weight, self.bce_weight = dice_weight, bce_weight

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * self.dice(prediction, target) + self.bce_weight * self.bce(prediction, target)


def loss_activation(loss) -> str | None:
    """`softmax` or `sigmoid`: the activation a loss applies to the model's output, where it says
    so (MONAI's Dice losses' flags, torch's cross-entropies, frame's DiceBCELoss); None when unknown."""
    if isinstance(loss, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return "softmax"
    if isinstance(loss, (nn.BCEWithLogitsLoss, DiceBCELoss)):
        return "sigmoid"
    dice = getattr(loss, "dice", loss)  # DiceCELoss and DiceFocalLoss keep their DiceLoss as .dice
    if getattr(dice, "softmax", False) is True:
        return "softmax"
    if getattr(dice, "sigmoid", False) is True:
        return "sigmoid"
    return None
