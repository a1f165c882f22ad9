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
from frame.training.metrics import LibraryMetric, class_indices, is_label_map


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


class Accuracy:
    """Top-1 accuracy against class indices, micro-averaged (hits over every item or voxel seen since
    `reset`): what torchmetrics' `MulticlassAccuracy(average="micro")` gives, counted here because importing
    torchmetrics costs every run seconds of start-up (tests/training/test_evaluators.py compares the two).

    The output is `[B, C, ...]` scores (logits or probabilities: the argmax is the same) or `[B, ...]`
    class indices; the target `[B, ...]` class indices, or a label map with a channel of one.
    """

    KEY = "accuracy"

    def __init__(self):
        self.reset()

    def update(self, prediction, target):
        if target.is_floating_point() and not bool((target == target.round()).all()):
            raise ValueError("accuracy needs class indices as the target, not probabilities or soft labels")
        if is_label_map(prediction, target):
            target = class_indices(prediction, target)
        if prediction.ndim == target.ndim + 1 and prediction.shape[:1] + prediction.shape[2:] == target.shape:
            classes = prediction.shape[1]
            prediction = prediction.argmax(dim=1)
        elif prediction.shape == target.shape and not prediction.is_floating_point():
            classes = None
        else:
            raise ValueError(
                "accuracy needs scores [B, C, ...] (or class indices [B, ...]) against class indices [B, ...]"
            )
        target = target.long()
        low, high = torch.stack(torch.aminmax(target)).tolist() if target.numel() else (0, 0)  # one wait for a GPU
        if low < 0 or (classes is not None and high >= classes):
            allowed = f"the output's 0..{classes - 1}" if classes is not None else "0 and above"
            raise ValueError(f"the target holds classes {low}..{high}, outside {allowed}")
        self._correct = self._correct + (prediction == target).sum()  # summed on the device, read in compute
        self._total += target.numel()

    def compute(self) -> dict[str, float]:
        return {self.KEY: int(self._correct) / self._total} if self._total else {}

    def reset(self):
        self._correct, self._total = 0, 0
