"""The metric-logger contract.

A logger is built from its config node, then `start` is called once with the
run directory. Subclass `MetricLogger` and override what you need; every
method has a no-op default. Only rank 0 gets loggers under DDP.
"""

from pathlib import Path
from typing import Any, Mapping


class MetricLogger:
    def start(self, run_dir: Path, config: Mapping[str, Any], resume_step: int | None) -> None:
        """Called before the first step; `resume_step` is the checkpoint's step when resuming."""

    def log_metrics(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        """Scalars, at the logging cadence (training) and after each validation."""

    def finish(self, status: str) -> None:
        """Called once at the end: status is 'complete', 'interrupted' or 'failed'."""
