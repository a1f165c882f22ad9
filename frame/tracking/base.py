"""The metric-logger contract.

A logger is built from its config node, then `start` is called once with the
run directory. Subclass `MetricLogger` and override what you need; every
method has a no-op default. Only rank 0 gets loggers under DDP.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class MetricLogger:
    prediction_examples: int = 0  # validation examples this logger wants per epoch (see log_examples)

    def start(self, run_dir: Path, config: Mapping[str, Any], resume_step: int | None) -> None:
        """Called before the first step; `resume_step` is the checkpoint's step when resuming."""

    def epoch_start(self, epoch: int, batches: int) -> None:
        """Called when a training epoch (0-based) of `batches` batches begins."""

    def log_metrics(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        """Scalars, at the logging cadence (training) and after each validation."""

    def log_examples(self, examples, step: int, epoch: int) -> None:
        """After each validation: the first `prediction_examples` validation items with their predictions.

        `examples` is a `frame.tracking.examples.Examples` (CPU tensors and label names);
        `examples.panels()` turns it into images, masks and classes ready to draw.
        """

    def finish(self, status: str) -> None:
        """Called once at the end: status is 'complete', 'pruned', 'interrupted' or 'failed'."""
