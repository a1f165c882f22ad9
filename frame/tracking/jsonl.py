"""`metrics.jsonl`: one JSON object per logged step, the record `frame runs` and `frame plot` read.

Writing (`JsonlLogger`) and reading (`read_metrics`, `best`) live together so that both agree
on the format; `better` is the one "better than the best so far" of frame (the loop's
best.pt, the console's summary, `frame runs`).
"""

import json
import logging
import math
import time
from pathlib import Path

from frame.core.atomic import write_file
from frame.core.state_files import read_bytes
from frame.tracking.base import MetricLogger

log = logging.getLogger("frame")


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
    """Keep only the rows with step <= `step` (atomically); damaged lines go too."""
    kept = [json.dumps(row) + "\n" for row in _rows(path) if row["step"] <= step]
    write_file(path, "".join(kept))


def _rows(path: Path) -> list[dict]:
    """The well-formed rows of a metrics.jsonl: objects with an integer step. A damaged line (a torn tail
    from a crash, an edit, invalid UTF-8) is dropped, with a warning unless it is the torn last line."""
    rows, damaged = [], []
    lines = (read_bytes(path) or b"").splitlines()  # never blocks; a FIFO or a directory: DamagedFile
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line.decode())
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool):
            rows.append(row)
        elif line.strip() and number < len(lines):
            damaged.append(number)
    if damaged:
        log.warning(
            "%s: dropped %d damaged line(s) (line %s): not an object with an integer step",
            path,
            len(damaged),
            ", ".join(map(str, damaged[:5])),
        )
    return rows


def read_metrics(run_dir: Path, filename: str = "metrics.jsonl") -> list[dict]:
    """The rows of `metrics.jsonl` (damaged lines are dropped, see `_rows`); [] when there is none.

    Raises:
        DamagedFile: a FIFO, a directory or an unreadable file is there.
    """
    return _rows(Path(run_dir) / filename)


def better(value: float, best: float | None, maximize: bool) -> bool:
    """Whether `value` beats `best` (None: nothing yet) for a metric that is maximized or minimized.

    NaN (a Dice whose labels were absent everywhere, a diverged loss) never beats anything, and
    anything beats a NaN best, so one NaN cannot freeze best.pt for the rest of the run.
    """
    if math.isnan(value):
        return False
    return best is None or math.isnan(best) or (value > best if maximize else value < best)


def best(records: list[dict], metric: str, maximize: bool) -> tuple[float | None, int | None]:
    """(best value, its epoch) of `metric` over the records; the first of equal values wins."""
    found = (None, None)
    for record in records:
        value = record.get(metric)
        if isinstance(value, (int, float)) and better(value, found[0], maximize):
            found = (value, record.get("epoch"))
    return found
