"""Scoring a model over a loader: the test set after training and `frame eval` call `score`, and
validation each epoch runs the same pipeline (the run's validation data through the deterministic
transforms, `infer` with the run's inferer, the evaluators' post-processing), so all three report
the same figures for the same model and data.

`score` runs the model with the loss and the evaluators and, on request, every evaluator on each
item alone (per-case Dice for segmentation).
"""

import torch

from frame.training.evaluators import update


@torch.no_grad()
def score(
    model,
    loader,
    evaluators: dict,
    device,
    loss_fn=None,
    item_evaluators: dict | None = None,
    autocast=None,
    inferer=None,
) -> tuple[dict[str, float], list[dict]]:
    """(metrics over the whole loader, one row per item when `item_evaluators` are given).

    `item_evaluators` are separate instances of the evaluators (reset for every item), so the
    aggregated figures are those of `evaluators`, exactly as validation computes them.
    """
    import contextlib

    model.eval()
    autocast = autocast or contextlib.nullcontext()
    for evaluator in [*evaluators.values(), *(item_evaluators or {}).values()]:
        evaluator.reset()
    total, batches, rows, index = 0.0, 0, [], 0
    for sample, target in loader:
        sample = sample.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with autocast:
            prediction = infer(model, sample, inferer)
            if loss_fn is not None:
                total += float(loss_fn(prediction, target))
        batches += 1
        prediction = prediction.float()
        for name, evaluator in evaluators.items():
            update(name, evaluator, prediction, target, f"batch {batches}")
        for i in range(len(sample) if item_evaluators else 0):
            row = {"item": index + i}
            for name, evaluator in item_evaluators.items():
                evaluator.reset()
                update(name, evaluator, prediction[i : i + 1], target[i : i + 1], f"item {index + i}")
                row.update(evaluator.compute())
            rows.append(row)
        index += len(sample)
    metrics = {"loss": total / max(batches, 1)} if loss_fn is not None else {}
    for evaluator in evaluators.values():
        metrics.update({key: float(value) for key, value in evaluator.compute().items()})
    return metrics, rows


def infer(model, inputs, inferer=None):
    """The model's output on a batch: through the run's `inferer` (MONAI's `inferer(inputs, network)`, a
    sliding window over whole volumes), else the model called on it."""
    return model(inputs) if inferer is None else inferer(inputs, model)
