"""Validation metrics as a CSV table, one row per epoch (open it in a spreadsheet)."""

import csv
from pathlib import Path

from frame.tracking.base import MetricLogger


class CSVLogger(MetricLogger):
    """Writes `<run_dir>/<filename>`: epoch, step and every `val/...` metric, one row per validation.

    Training scalars stay in metrics.jsonl. A resumed run appends to the same file.

    Args:
        filename: the file's name inside the run directory.
    """

    def __init__(self, filename: str = "validation.csv"):
        self.filename = filename
        self.path: Path | None = None

    def start(self, run_dir, config, resume_step):
        self.path = Path(run_dir) / self.filename

    def log_metrics(self, metrics, step, epoch):
        row = {k: v for k, v in metrics.items() if k.startswith("val/")}
        if not row:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["epoch", "step", *row])
            if new:
                writer.writeheader()
            writer.writerow({"epoch": epoch, "step": step, **row})
