"""`frame plot RUN_DIR... [-o FILE.png]`: curves from metrics.jsonl, headless (matplotlib Agg).

Each argument is a run directory or a directory of runs (a sweep, or outputs/).
Curves of every run found are overlaid: training loss and learning rate
against the optimizer step, validation loss and the monitored metric against
the epoch. When an argument holds several runs whose `.hydra/overrides.yaml`
differ (a sweep), a second row shows the best monitored value of each member
against each swept parameter.
"""

from pathlib import Path

from frame.compat.extras import require
from frame.core import run_record
from frame.core.atomic import Outputs, make_folder, write_file
from frame.core.errors import FrameError
from frame.tracking.jsonl import best, read_metrics
from frame.trained.runs import find_runs, monitor_of, run_name, swept_parameters


def plot(paths: list[Path], output: Path | None = None) -> Path:
    """Draw the figure for `paths` into `output` (default: plot.png in the first path); returns the file."""
    matplotlib = require("matplotlib", "frame plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = []  # (argument, [run dirs])
    for path in map(Path, paths):
        runs = find_runs(path)
        if not runs:
            raise FrameError(f"{path} holds no run (no metrics.jsonl or run.json under it).")
        groups.append((path, runs))
    runs = [(run, run_name(run, root)) for root, members in groups for run in members]
    metrics = {run: read_metrics(run) for run, _ in runs}  # each metrics.jsonl read once
    metric, maximize = monitor_of(runs[0][0])
    panels = _curve_panels(metrics.values(), metric)
    sweeps = [(root, members, swept_parameters(members)) for root, members in groups if len(members) > 1]
    sweep_axes = [(root, members, key, values) for root, members, params in sweeps for key, values in params.items()]

    columns = max(len(panels), len(sweep_axes), 1)
    rows = 1 + (1 if sweep_axes else 0)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for axis, (key, x_key) in zip(axes[0], panels):
        for run, label in runs:
            points = [(r[x_key], r[key]) for r in metrics[run] if isinstance(r.get(key), (int, float))]
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, marker="o" if x_key == "epoch" and len(xs) < 30 else None, markersize=3, label=label)
        axis.set_title(key)
        axis.set_xlabel(x_key)
        if key == "train/lr":
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    if len(runs) > 1:
        axes[0][0].legend(fontsize="small")
    for axis, (root, members, key, values) in zip(axes[1] if sweep_axes else [], sweep_axes):
        scores = [best(metrics[member], metric, maximize)[0] for member in members]
        _sweep_panel(axis, key, values, scores)
        axis.set_title(f"{root.name}: best {metric}")
    for row in axes:
        for axis in row:
            if not axis.has_data():
                axis.set_visible(False)
    figure.tight_layout()
    output = Path(output) if output else groups[0][0] / "plot.png"
    Outputs(run / name for run, _ in runs for name in (run_record.FILENAME, "metrics.jsonl")).add(output, "the plot")
    make_folder(output.parent)
    try:
        write_file(output, lambda tmp: figure.savefig(tmp, dpi=80))
    finally:
        plt.close(figure)
    return output


def _curve_panels(all_records, metric) -> list[tuple[str, str]]:
    """(metric, x axis) of each panel, for metrics some run logged."""
    keys = set()
    for records in all_records:
        for record in records:
            keys.update(record)
    wanted = [("train/loss", "step"), ("val/loss", "epoch"), (metric, "epoch"), ("train/lr", "step")]
    panels = []
    for key, x_key in wanted:
        if key in keys and (key, x_key) not in panels:
            panels.append((key, x_key))
    return panels


def _sweep_panel(axis, key, values, scores):
    """The best monitored value of each member against one swept parameter (numeric or categorical)."""
    pairs = [(v, s) for v, s in zip(values, scores) if s is not None]
    if not pairs:
        return
    try:
        numbers = [(float(v), s) for v, s in pairs]
    except ValueError:
        numbers = None
    if numbers:
        numbers.sort()
        xs, ys = zip(*numbers)
        axis.plot(xs, ys, "o-")
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            axis.set_xscale("log")
    else:
        labels = sorted({v for v, _ in pairs})
        axis.plot([labels.index(v) for v, _ in pairs], [s for _, s in pairs], "o")
        axis.set_xticks(range(len(labels)), labels, rotation=20, fontsize="small")
    axis.set_xlabel(key)
    axis.grid(alpha=0.3)
