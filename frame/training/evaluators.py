"""Built-in evaluators.

The contract (any object with these three methods works; torchmetrics and MONAI metrics
are wrapped in `frame.training.metrics.LibraryMetric` by themselves):

    update(prediction, target)   # raw model output and the batch's labels
    compute() -> dict[str, float]
    reset()

The loop calls them on every validation batch and logs `val/<key>`.
"""

import torch

from frame.core.errors import FrameError
from frame.training.metrics import LibraryMetric, local


def described(tensor) -> str:
    """`[2, 1, 16, 16] float32`: how messages show a tensor."""
    return f"{list(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"


def update(name: str, evaluator, prediction, target, where: str) -> None:
    """`evaluator.update`, or a FrameError naming the evaluator, the shapes and dtypes, and `where`
    (a library metric's own error is a traceback deep in torchmetrics or MONAI)."""
    try:
        evaluator.update(prediction, target)
    except (MemoryError, torch.OutOfMemoryError):
        raise  # the machine's limit, not a mistake in the job: no exit 2
    except Exception as error:
        raise FrameError(
            f"evaluators.{name} ({type(evaluator).__name__}) fails on output {described(prediction)}, "
            f"target {described(target)} ({where}): {error}"
        ) from None


class Dice(LibraryMetric):
    """Per-label Dice through MONAI's DiceMetric: `dice/<label>` for each label and their mean as `dice`.

    Args:
        labels: channel names; frame passes the dataset's labels when unset.
        activation: `softmax` (argmax; a class-index target, background included, as with
            `DiceCELoss(to_onehot_y=True, softmax=True)`), `sigmoid` (one channel per label,
            labels may overlap) or `auto`: softmax when the target is a class-index map, else
            sigmoid, or what the loss applies where it says (DiceCELoss(softmax=True): softmax). frame
            warns before the first epoch when an explicit one contradicts the loss.
        threshold: probability above which a voxel counts as the label (sigmoid).
    """

    KEY = "dice"  # the key it reports (`frame check` reads it without importing)

    def __init__(self, labels=None, activation: str = "auto", threshold: float = 0.5):
        from monai.metrics import DiceMetric

        metric = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True)
        super().__init__(metric, activation=activation, threshold=threshold, labels=labels, key=self.KEY)


class Accuracy(LibraryMetric):
    """Top-1 accuracy against class indices: torchmetrics' MulticlassAccuracy (micro average), with
    the number of classes taken from the output's channels on the first batch."""

    KEY = "accuracy"

    def __init__(self):
        # imported here, not at the first batch: its import (seconds) is start-up, not the first
        # validation's time or `frame eval`'s time per item
        from torchmetrics.classification import MulticlassAccuracy

        super().__init__(None, key=self.KEY)
        self._monai = False
        self._make = MulticlassAccuracy

    def update(self, prediction, target):
        if self.metric is None:
            self.metric = self._make(num_classes=prediction.shape[1], average="micro")
            local(self.metric)
        super().update(prediction, target)

    def compute(self) -> dict[str, float]:
        return super().compute() if self.metric is not None else {}

    def reset(self):
        if self.metric is not None:
            self.metric.reset()
