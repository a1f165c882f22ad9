"""`metrics.jsonl`: one JSON object per logged step, the record `frame runs` and `frame plot` read.

Writing (`JsonlLogger`) and reading (`read_metrics`, `best`) live together so that both agree
on the format; `better` is the one "better than the best so far" of frame (the loop's
best.pt, the console's summary, `frame runs`).
"""

import json
import time
from pathlib import Path

from frame.files import replace_text
from frame.tracking.base import MetricLogger


class JsonlLogger(MetricLogger):
    """Appends `{"step", "epoch", "time", <metrics>}` lines to `<run_dir>/<filename>`.

    On resume, lines past the checkpoint's step are dropped first: the resumed
    run logs them again, so the file ends with no step missing or repeated.
    """

    def __init__(self, filename: str = "metrics.jsonl"):
        self.filename = filename
        self._file = None

    def start(self, run_dir, config, resume_step):
        path = Path(run_dir) / self.filename
        if path.exists():
            _truncate_after(path, resume_step if resume_step is not None else -1)
        self._file = open(path, "a", buffering=1)

    def log_metrics(self, metrics, step, epoch):
        record = {"step": step, "epoch": epoch, "time": round(time.time(), 3), **metrics}
        self._file.write(json.dumps(record) + "\n")

    def finish(self, status):
        if self._file is not None:
            self._file.close()
            self._file = None


def _truncate_after(path: Path, step: int) -> None:
    """Keep only the records with step <= `step` (atomically)."""
    with open(path) as lines:
        kept = [line for line in lines if line.strip() and _step_of(line) <= step]
    replace_text(path, "".join(kept))


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError):
        return 2**62  # a torn last line from a crash: dropped


def read_metrics(run_dir: Path, filename: str = "metrics.jsonl") -> list[dict]:
    """The records of `metrics.jsonl` (a torn last line is skipped)."""
    records = []
    try:
        with open(Path(run_dir) / filename) as lines:
            for line in lines:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return records


def better(value: float, best: float | None, maximize: bool) -> bool:
    """Whether `value` beats `best` (None: nothing yet) for a metric that is maximized or minimized."""
    return best is None or (value > best if maximize else value < best)


def best(records: list[dict], metric: str, maximize: bool) -> tuple[float | None, int | None]:
    """(best value, its epoch) of `metric` over the records; the first of equal values wins."""
    found = (None, None)
    for record in records:
        value = record.get(metric)
        if isinstance(value, (int, float)) and better(value, found[0], maximize):
            found = (value, record.get("epoch"))
    return found
