"""Built-in evaluators.

The contract (any object with these three methods works, e.g. a thin wrapper
around a torchmetrics Metric or a MONAI Cumulative metric):

    update(prediction, target)   # raw model output and the batch's labels
    compute() -> dict[str, float]
    reset()

The loop calls them on every validation batch and logs `val/<key>`.
"""

import torch


class Dice:
    """Per-label Dice for multi-label segmentation (one output channel per label).

    The prediction is thresholded after a sigmoid; `compute()` gives
    `dice/<label>` for each label and their mean as `dice`.

    Args:
        labels: channel names; frame passes the dataset's labels when unset.
        threshold: probability above which a voxel counts as the label.
    """

    def __init__(self, labels=None, threshold: float = 0.5):
        from monai.metrics import DiceMetric

        self.labels = list(labels) if labels is not None else None
        self.threshold = threshold
        self._metric = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True)

    def update(self, prediction, target):
        self._metric(y_pred=(torch.sigmoid(prediction.float()) > self.threshold).float(), y=target)

    def compute(self) -> dict[str, float]:
        per_label = self._metric.aggregate().tolist()
        names = self.labels or [str(i) for i in range(len(per_label))]
        scores = {f"dice/{name}": float(value) for name, value in zip(names, per_label)}
        scores["dice"] = float(torch.tensor(per_label).nanmean())
        return scores

    def reset(self):
        self._metric.reset()


class Accuracy:
    """Top-1 accuracy for classification: argmax of the logits against class indices."""

    def __init__(self):
        self.reset()

    def update(self, prediction, target):
        correct = (prediction.argmax(dim=1) == target).sum()
        self._correct = self._correct + correct.to(self._correct.device)
        self._total += target.numel()

    def compute(self) -> dict[str, float]:
        return {"accuracy": float(self._correct) / max(self._total, 1)}

    def reset(self):
        self._correct = torch.zeros((), dtype=torch.long)
        self._total = 0
