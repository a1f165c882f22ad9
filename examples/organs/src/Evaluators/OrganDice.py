"""Dice per organ over the whole validation set."""

import math

import torch


class OrganDice:
    """Dice of each organ over all validation voxels, and their mean.

    A voxel belongs to an organ when the sigmoid of its logit exceeds `threshold`. Reports
    `dice/<organ>` for each label and `dice` for the mean over the organs present.

    Args:
        labels: organ names in channel order; frame passes the dataset's labels.
        threshold: probability above which a voxel counts.
    """

    def __init__(self, labels=None, threshold: float = 0.5):
        self.labels, self.threshold = labels, threshold
        self.reset()

    def reset(self):
        self.overlap = self.total = None

    def update(self, prediction, target):
        predicted = (torch.sigmoid(prediction) > self.threshold).float()
        dims = [0] + list(range(2, prediction.dim()))  # sum over batch and space, keep organs
        overlap, total = (predicted * target).sum(dims).cpu(), (predicted.sum(dims) + target.sum(dims)).cpu()
        self.overlap = overlap if self.overlap is None else self.overlap + overlap
        self.total = total if self.total is None else self.total + total

    def compute(self) -> dict[str, float]:
        names = self.labels or [str(i) for i in range(len(self.total))]
        scores = {
            f"dice/{name}": (2 * float(o) / float(t)) if t > 0 else math.nan
            for name, o, t in zip(names, self.overlap, self.total)
        }
        present = [v for v in scores.values() if not math.isnan(v)]
        scores["dice"] = sum(present) / len(present) if present else math.nan
        return scores
