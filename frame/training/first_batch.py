"""Mistakes caught before the first epoch: one training and one validation batch (and one of
`data.test`, scored after training) through the model, the loss and the evaluators, with nothing kept.

What a whole epoch (or a silent run) would otherwise find out: a loss that broadcasts output and
target (MSE on `[16]` against `[16, 1]` trains on a `[16, 16]` grid, with only a torch warning on
stderr), a class index the output has no channel for, a softmax loss on one output channel or a
sigmoid loss on a class-index map, dtypes the loss cannot take, a metric whose inputs break its
library's contract, two evaluators reporting the same key, and a `trainer.monitor` that no
evaluator reports. A Dice whose activation contradicts the loss's gets a warning.

Nothing changes: no optimizer step, gradients back to None, buffers (BatchNorm's running
statistics) and the mode of the model put back, evaluators reset, and every RNG restored.
"""

import itertools
import logging
import random
import warnings

import numpy as np
import torch

from frame.core.errors import FrameError, did_you_mean
from frame.training.evaluators import described, update
from frame.training.losses import loss_activation
from frame.training.metrics import is_label_map
from frame.training.transform_args import untensored
from frame.training.validation import infer

log = logging.getLogger("frame")


def check_first_batches(job, autocast, monitor: str) -> None:
    """Raises FrameError naming the shapes and dtypes at fault."""
    model = job.model  # not the DDP wrapper: no collective for a check
    rng = _rng_state()
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    training = model.training
    try:
        model.train()
        prediction, target = _through_loss(job, autocast, job.train_loader, "training", backward=True)
        model.eval()
        with torch.no_grad():
            prediction, target = _through_loss(job, autocast, job.val_loader, "validation", backward=False)
            metrics = _through_evaluators(job, prediction.float(), target)
            if getattr(job, "test_loader", None) is not None:  # scored after training: fail now, not then
                prediction, target = _through_loss(job, autocast, job.test_loader, "test", backward=False)
                _through_evaluators(job, prediction.float(), target, "test")
    finally:
        for parameter in model.parameters():
            parameter.grad = None
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        model.train(training)
        for evaluator in job.evaluators.values():
            evaluator.reset()
        _restore_rng(rng)
    known = {"val/loss", "train/epoch_time_s", *(f"val/{key}" for key in metrics)}
    if monitor not in known:
        raise FrameError(
            f"trainer.monitor={monitor} is not among the metrics the evaluators return: "
            f"{', '.join(sorted(known))}.{did_you_mean(monitor, known)}"
        )
    _warn_on_activation(job)


def collect(evaluators: dict) -> dict[str, float]:
    """Every evaluator's `compute()` in one dict; two evaluators with the same key are refused
    (one would silently overwrite the other, and `trainer.monitor` follow whichever ran last)."""
    merged, owner = {}, {}
    for name, evaluator in evaluators.items():
        for key, value in evaluator.compute().items():
            if key in owner:
                raise FrameError(
                    f"evaluators.{owner[key]} and evaluators.{name} both report '{key}'; give one of "
                    f"them another name (a library metric's key is its `name` param)."
                )
            owner[key], merged[key] = name, float(value)
    return merged


def _first_batch(loader):
    """The loader's first batch, made here in the main process. Iterating the loader itself would
    start its persistent workers (with batches prefetched for an epoch that has not begun) and draw
    its iterator's seed: the first epoch must find both as if nothing had run (exact resume)."""
    items = [loader.dataset[item] for item in itertools.islice(iter(loader.sampler), loader.batch_size)]
    try:
        return loader.collate_fn(items)
    except TypeError:  # e.g. PIL images: a pipeline without ToImage/ToTensor
        problem = untensored(items, loader.dataset)
        if problem is None:
            raise
        raise problem from None


def _through_loss(job, autocast, loader, stage, backward):
    sample, target = _first_batch(loader)
    sample, target = sample.to(job.device), target.to(job.device)
    if stage == "training" and getattr(job, "batch_transforms", None) is not None:  # what the loss trains on
        sample, target = job.batch_transforms(sample, target, 0, 0)
    with autocast:  # validation and the test set run through the run's inferer (a sliding window), as they will
        prediction = job.model(sample) if backward else infer(job.model, sample, getattr(job, "inferer", None))
    shapes = f"output {described(prediction)}, target {described(target)} (first {stage} batch)"
    loss_name = type(job.loss_fn).__name__
    _check_broadcast(prediction, target, loss_name, shapes)
    check_loss_activation(job.loss_fn, prediction, target, shapes)
    check_class_indices(job.loss_fn, prediction, target, shapes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with autocast:
                loss = job.loss_fn(prediction, target)
            if backward:
                loss.float().backward()
        except FrameError:
            raise
        except Exception as error:
            raise FrameError(
                f"the loss ({loss_name}) fails on {shapes}: {str(error).strip().splitlines()[0]}"
            ) from None
    for warning in caught:
        if "target size" in str(warning.message) and "input size" in str(warning.message):
            raise FrameError(f"the loss ({loss_name}) would broadcast {shapes}: {warning.message}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if loss.numel() != 1:
        raise FrameError(
            f"the loss ({loss_name}) gives {list(loss.shape)} values on {shapes}; it must give one "
            f"(reduction='mean' or 'sum')."
        )
    return prediction.detach(), target


def _check_broadcast(prediction, target, loss_name, shapes):
    """A floating target whose shape broadcasts with the output's to something larger than both:
    what MSE, L1 or a hand-written `((p - t) ** 2).mean()` would silently compute."""
    if not target.is_floating_point() or prediction.shape == target.shape:
        return
    try:
        grid = torch.broadcast_shapes(prediction.shape, target.shape)
    except RuntimeError:
        return  # does not broadcast at all: the loss says so itself
    if grid.numel() > max(prediction.numel(), target.numel()):
        raise FrameError(
            f"the loss ({loss_name}) would broadcast {shapes} to {list(grid)}; make the output "
            f"and the target the same shape (a squeeze or unsqueeze in the model or a label transform)."
        )


def check_loss_activation(loss_fn, prediction, target, shapes):
    """Outputs and targets the loss's activation cannot mean (MONAI only warns, then trains on nothing): a
    softmax over one channel (always 1; `to_onehot_y` has no room for a second class), a sigmoid loss on a
    class-index map (it wants 0 or 1 per channel)."""
    used, name = loss_activation(loss_fn), type(loss_fn).__name__
    if used == "softmax" and prediction.ndim >= 2 and prediction.shape[1] == 1:
        raise FrameError(
            f"the loss ({name}) takes a softmax over the output's channels, but the output has one "
            f"channel: {shapes}. Give the model a channel per class, background included "
            f"(out_channels=2 for one foreground label), or train one channel with a sigmoid loss "
            f"(DiceLoss(sigmoid=True), BCEWithLogitsLoss)."
        )
    if used != "sigmoid" or target.numel() == 0 or not bool((target == target.round()).all()):
        return
    high = int(target.max())
    if is_label_map(prediction, target) or high > 1:
        raise FrameError(
            f"the loss ({name}) takes a sigmoid per channel and wants 0 or 1 in each, but the target "
            f"is a class-index map (values up to {high}): {shapes}. Train classes with a softmax loss "
            f"(DiceCELoss(to_onehot_y=True, softmax=True), CrossEntropyLoss), or one-hot the labels "
            f"(AsDiscreted(keys='label', to_onehot=N)) to the output's channels."
        )


def check_class_indices(loss_fn, prediction, target, shapes):
    """A class-index target with an index the output has no channel for (an IndexError on the CPU,
    a device-side assert that kills the process on a GPU)."""
    if not is_label_map(prediction, target):
        return
    if target.is_floating_point() and not bool((target == target.round()).all()):
        return  # soft labels, not indices
    ignored = getattr(loss_fn, "ignore_index", None)
    indices = target[target != ignored] if ignored is not None else target
    if indices.numel() == 0:
        return
    low, high = int(indices.min()), int(indices.max())
    channels = prediction.shape[1]
    if low < 0 or high >= channels:
        raise FrameError(
            f"class index {high if high >= channels else low} in the target, but the output has "
            f"{channels} channels (indices 0-{channels - 1}): {shapes}. Set the model's number of "
            f"outputs to the number of classes."
        )


def _through_evaluators(job, prediction, target, stage="validation") -> dict[str, float]:
    for name, evaluator in job.evaluators.items():
        evaluator.reset()
        update(name, evaluator, prediction, target, f"first {stage} batch")
    return collect(job.evaluators)


def _warn_on_activation(job):
    used = loss_activation(job.loss_fn)
    for name, evaluator in job.evaluators.items():
        chosen = getattr(evaluator, "activation", None)
        if used and chosen in ("softmax", "sigmoid") and chosen != used:
            log.warning(
                "evaluators.%s scores with %s but the loss (%s) trains with %s: its figures are not those "
                "of the model's predictions. Set evaluators.%s.activation=%s if that is what you mean.",
                name,
                chosen,
                type(job.loss_fn).__name__,
                used,
                name,
                used,
            )


def _rng_state():
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _restore_rng(state):
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state_all(state[3])
