"""Library metrics as frame evaluators: one adapter for torchmetrics and MONAI.

frame's evaluator contract is `update(prediction, target)`, `compute() -> dict[str, float]`,
`reset()`. A torchmetrics `Metric` (update/compute returning a tensor or a dict) and a MONAI
cumulative metric (`__call__`/`aggregate`/`reset`) fit it through `LibraryMetric`, which also
does the post-processing MONAI's `AsDiscrete` does, chosen by `activation`:

    softmax   argmax over the channels; for MONAI metrics both prediction and a class-index
              target become one-hot with as many channels as the output has
    sigmoid   one channel per label, each thresholded after a sigmoid (`threshold`)
    auto      what the loss applies (`follow`: softmax for DiceCELoss(softmax=True) or
              cross-entropy, sigmoid for BCE or DiceLoss(sigmoid=True): the rule `frame predict`
              uses); where the loss does not say, softmax when the target is a class-index map
              (one channel, or none, where the output has several), else sigmoid, decided on the
              first batch. MONAI metrics given by name get it.
    None      the raw output (torchmetrics' classification metrics take logits themselves)

MONAI's own spelling, the tutorials' `post_pred=AsDiscrete(argmax=True, to_onehot=N)` and
`post_label=AsDiscrete(to_onehot=N)`, is taken instead of an activation: each item of the batch
goes through them, as `decollate_batch` gives them. A MONAI metric that counts (Dice, IoU,
distances, confusion matrices) then gets what its contract asks, or frame stops: prediction and
target of the same shape, both binarized (0 or 1).

Ranking metrics (ROC AUC, average precision) need scores, not decisions: for them (`discrete`
false, the default for those) softmax and sigmoid give probabilities, and a class-index target
still becomes one-hot for MONAI. An AUC of argmax decisions would be another, lower number.
"""

import torch

from frame.config.json_job import snake

ACTIVATIONS = ("softmax", "sigmoid", "auto", None)


class LibraryMetric:
    """A torchmetrics or MONAI metric behind frame's evaluator contract.

    Keys: `<key>` for a scalar; `<key>/<label>` per element and their mean as `<key>` when the
    metric gives one value per label (`labels` names them, else 0, 1, ...); `<key>/<entry>` for
    each entry of a dict.

    Args:
        metric: the library metric (an instance; a JSON job or YAML gives it as a nested component).
        activation: post-processing before `update` (module docstring): softmax | sigmoid | auto | None.
        threshold: probability above which a voxel counts as the label (sigmoid).
        labels: names of the per-label values; frame passes the dataset's labels when unset.
        key: the metric's key; frame passes the evaluator's name when unset.
        discrete: whether the activation ends in decisions (argmax, threshold) or keeps the
            probabilities; default: probabilities for ranking metrics (AUC, average precision).
        post_pred / post_label: MONAI transforms (or lists of them) applied to each item's
            prediction / target instead of an activation (`AsDiscrete(argmax=True, to_onehot=N)`).
    """

    def __init__(
        self,
        metric,
        activation: str | None = None,
        threshold: float = 0.5,
        labels=None,
        key: str | None = None,
        discrete: bool | None = None,
        post_pred=None,
        post_label=None,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}; expected one of softmax, sigmoid, auto or null.")
        if (post_pred is not None or post_label is not None) and activation is not None:
            raise ValueError(
                f"activation={activation} and post_pred/post_label both post-process the output; give one of them."
            )
        self.metric = metric
        self.activation = activation
        self.post_pred, self.post_label = _listed(post_pred), _listed(post_label)
        self.threshold = threshold
        self.discrete = not _ranks(metric) if discrete is None else discrete
        self.labels = list(labels) if labels is not None else None
        self.key = key or snake(type(metric).__name__).removesuffix("_metric")
        self._monai = not hasattr(metric, "compute")  # MONAI's Cumulative: __call__ and aggregate
        self._unchecked = True  # MONAI's contract, checked on the first batch
        if not self._monai and hasattr(metric, "distributed_available_fn"):
            local(metric)

    def follow(self, loss_activation: str | None) -> None:
        """`activation: auto` becomes what the loss applies (softmax or sigmoid), when it says."""
        if self.activation == "auto" and loss_activation is not None:
            self.activation = loss_activation

    def update(self, prediction, target):
        if self.activation == "auto":
            self.activation = infer_activation(prediction, target)
        if self.post_pred or self.post_label:
            prediction, target = _per_item(self.post_pred, prediction), _per_item(self.post_label, target)
        else:
            prediction, target = self._post(prediction, target)
        if self._monai:
            if self._unchecked:  # the first batch (frame checks one before epoch 1): the same rule for the rest
                self._unchecked = False
                if _counts(self.metric):
                    _check_contract(self.metric, prediction, target)
            self.metric(y_pred=prediction, y=target)
        else:
            if getattr(self.metric, "device", prediction.device) != prediction.device:
                self.metric.to(prediction.device)
            self.metric.update(prediction, target)

    def compute(self) -> dict[str, float]:
        value = _aggregate(self.metric) if self._monai else self.metric.compute()
        if isinstance(value, dict):
            return {f"{self.key}/{entry}": float(v) for entry, v in value.items()}
        value = torch.as_tensor(value).detach().float().flatten()
        if value.numel() == 1:
            return {self.key: float(value)}
        names = self.labels if self.labels is not None and len(self.labels) == value.numel() else range(value.numel())
        scores = {f"{self.key}/{label}": float(v) for label, v in zip(names, value)}
        scores[self.key] = float(value.nanmean())
        return scores

    def reset(self):
        self.metric.reset()

    def _post(self, prediction, target):
        if not self.discrete and self.activation in ("softmax", "sigmoid"):
            scores = prediction.float().softmax(dim=1) if self.activation == "softmax" else prediction.float().sigmoid()
            if self.activation == "softmax":
                target = class_indices(prediction, target)
                target = _one_hot(target, prediction.shape[1]) if self._monai else target
            return scores, target
        if self.activation == "sigmoid":
            binary = torch.sigmoid(prediction.float()) > self.threshold
            return (binary.float(), target) if self._monai else (binary.int(), target.int())
        if self.activation == "softmax":
            channels = prediction.shape[1]
            indices = prediction.argmax(dim=1)
            target = class_indices(prediction, target)
            if not self._monai:
                return indices, target
            return _one_hot(indices, channels), _one_hot(target, channels)
        if not self._monai and is_label_map(prediction, target):  # torchmetrics wants [B, ...] long, not MONAI's
            target = class_indices(prediction, target)  # [B, 1, ...] of floats that LoadImaged gives a label map
        return prediction, target


def _listed(transforms) -> list:
    return [] if transforms is None else list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]


def _per_item(transforms: list, batch):
    """Each item of the batch (channel first, as MONAI's decollate_batch gives it) through `transforms`."""
    if not transforms:
        return batch
    items = []
    for item in batch:
        for transform in transforms:
            item = transform(item)
        items.append(torch.as_tensor(item).as_subclass(torch.Tensor))
    return torch.stack(items)


# MONAI metrics that count voxels or items of each class: they need binarized one-hot inputs
_COUNTING = (
    "DiceMetric",
    "MeanIoU",
    "GeneralizedDiceScore",
    "HausdorffDistanceMetric",
    "SurfaceDistanceMetric",
    "SurfaceDiceMetric",
    "ConfusionMatrixMetric",
)


def _counts(metric) -> bool:
    return any(klass.__name__ in _COUNTING for klass in type(metric).__mro__)


def _check_contract(metric, prediction, target) -> None:
    """MONAI's contract for counting metrics: one-hot, binarized y_pred and y of one shape. MONAI itself
    checks only part of it and otherwise returns a number (the same Dice every epoch from raw logits)."""
    name = type(metric).__name__
    fix = (
        "set the evaluator's activation (softmax for a softmax loss on a label map, sigmoid for one channel "
        "per label) or its post_pred/post_label, e.g. AsDiscrete(argmax=True, to_onehot=N) and AsDiscrete(to_onehot=N)"
    )
    if prediction.shape != target.shape:
        raise ValueError(
            f"{name} needs y_pred and y of one shape (one-hot, a channel per class); they are "
            f"{list(prediction.shape)} and {list(target.shape)}: {fix}."
        )
    for what, tensor in (("y_pred", prediction), ("y", target)):
        if not bool(((tensor == 0) | (tensor == 1)).all()):
            low, high = float(tensor.min()), float(tensor.max())
            raise ValueError(
                f"{name} needs binarized {what} (0 or 1); it holds values from {low:.3g} to {high:.3g}: {fix}."
            )


def local(metric) -> None:
    """A torchmetrics metric that never syncs across ranks: every rank validates the whole set (summing
    ranks would count it N times), and the test set is scored on rank 0 alone (a sync would wait at a
    barrier for ranks that never come). `sync_on_compute=False` set after construction is not enough:
    torchmetrics reads it into its `_to_sync` only in `forward`, and frame calls `update`."""
    metric.sync_on_compute = False
    metric.distributed_available_fn = _single_process


def _single_process() -> bool:
    return False


def _ranks(metric) -> bool:
    """A ranking metric (ROC AUC, average precision): it needs scores, not decisions."""
    name = type(metric).__name__.lower()
    return any(word in name for word in ("auc", "auroc", "averageprecision"))


def _aggregate(metric):
    """MONAI's `aggregate`, except that a mean over no values is NaN, not MONAI's 0.0.

    With `ignore_empty` an item whose truth lacks a label has no Dice (or IoU) for it; a label
    absent from every item would otherwise score 0.0 and pull the mean over labels down.
    """
    value = metric.aggregate()
    if isinstance(value, (list, tuple)):  # (value, not_nans) with get_not_nans
        value = value[0]
    reduction, buffer = str(getattr(metric, "reduction", "")), metric.get_buffer()
    if not (torch.is_tensor(value) and reduction.startswith("mean") and torch.is_tensor(buffer)):
        return value
    from monai.metrics.utils import do_metric_reduction

    _, counted = do_metric_reduction(buffer.clone(), reduction)  # it zeroes the NaNs in place
    return torch.where(counted.to(value.device) > 0, value, torch.nan)


def infer_activation(prediction, target) -> str:
    """softmax for a class-index target (one channel or none, against several output channels), else sigmoid."""
    return "softmax" if is_label_map(prediction, target) else "sigmoid"


def is_label_map(prediction, target) -> bool:
    if prediction.ndim < 2 or prediction.shape[1] < 2:
        return False
    return target.ndim == prediction.ndim - 1 or (target.ndim == prediction.ndim and target.shape[1] == 1)


def class_indices(prediction, target):
    """A class-index target as `[B, ...]` long (its channel of one dropped)."""
    if target.ndim == prediction.ndim:
        target = target[:, 0]
    return target.long()


def _one_hot(indices, channels):
    return torch.nn.functional.one_hot(indices, channels).movedim(-1, 1).float()


def as_evaluator(obj, name: str, labels=None):
    """`obj` when it keeps frame's contract; a library metric wrapped in `LibraryMetric` otherwise: a MONAI
    metric with `activation: auto` (it takes no logits), a torchmetrics one with the raw output (it takes them)."""
    if isinstance(obj, LibraryMetric) or not _is_library_metric(obj):
        return obj
    monai = type(obj).__module__.startswith("monai.")
    return LibraryMetric(obj, activation="auto" if monai else None, labels=labels, key=name)


def _is_library_metric(obj) -> bool:
    module = type(obj).__module__
    return module.startswith(("torchmetrics.", "monai.metrics."))
