"""Looking at runs without any service: `frame runs` and the data behind `frame plot`.

A run is a directory with `run.json` (written by the training process, see
`frame.core.run_record`) and `metrics.jsonl`. Everything here reads files only, never
imports torch, and works on a copy of `outputs/` on a laptop.

Status shown:
    running     run.json says running and the process is alive (same host: pid and
                process start time; another host: a heartbeat younger than 5 min)
    complete    finished all epochs
    failed      an exception or a non-zero exit other than 75
    preempted   stopped by a signal / SLURM (exit 75), or its process vanished
                without recording an outcome (killed); the same command continues it
    cancelled   a sweep member cancelled before it started (`scancel`): it has no run
                directory, its sweep's sweep.json says so; the same command runs it
"""

import json
from pathlib import Path

from frame.core import run_record
from frame.tracking.console import format_duration
from frame.tracking.jsonl import best, read_metrics

_SKIP = {"wandb", ".hydra", "checkpoints", "examples"}


def find_runs(root: Path) -> list[Path]:
    """Run directories under `root` (itself included): those with run.json or metrics.jsonl, sorted by path."""
    root = Path(root)
    found = []

    def walk(directory: Path, depth: int):
        if (directory / run_record.FILENAME).is_file() or (directory / "metrics.jsonl").is_file():
            found.append(directory)
        if depth == 0:
            return
        for child in sorted(directory.iterdir()):
            if child.is_dir() and not child.is_symlink() and child.name not in _SKIP:
                walk(child, depth - 1)

    if root.is_dir():
        walk(root, 4)
    return found


def monitor_of(run_dir: Path, record: dict | None = None) -> tuple[str, bool]:
    """(monitored metric, maximize) from run.json, else from .hydra/config.yaml, else val/loss (min)."""
    record = run_record.read(run_dir) if record is None else record
    if record.get("monitor"):
        return record["monitor"], record.get("monitor_mode") == "max"
    trainer = (_hydra_yaml(run_dir, "config.yaml") or {}).get("trainer") or {}
    return trainer.get("monitor", "val/loss"), trainer.get("monitor_mode") == "max"


def summarize(run_dir: Path, root: Path, now: float | None = None) -> dict:
    """One row of `frame runs`."""
    record = run_record.read(run_dir)
    records = read_metrics(run_dir)
    metric, maximize = monitor_of(run_dir, record)
    value, best_epoch = best(records, metric, maximize)
    status, detail = _status(record, now)
    if not record and (Path(run_dir) / run_record.FILENAME).is_file():
        status, detail = "unreadable", f"{run_record.FILENAME} is damaged (not a JSON object)"
    epochs_done = max((r.get("epoch", 0) for r in records if any(k.startswith("val/") for k in r)), default=0)
    return {
        "run": run_name(run_dir, root),
        "dir": str(run_dir),
        "sweep_member": (Path(run_dir).parent / "multirun.yaml").is_file(),
        "status": status,
        "detail": detail,
        "epoch": epochs_done,
        "epochs": record.get("epochs"),
        "monitor": metric,
        "best": value,
        "best_epoch": best_epoch,
        "wall_time_s": round(run_record.wall_time(record, now), 1) if record else None,
        "attempts": len(record.get("attempts", [])),
        "wandb_id": record.get("wandb_id"),
        "test": record.get("test"),  # data.test scored with best.pt after training (frame.training.loop)
        "config_hash": record.get("config_hash"),
        "git": record.get("git"),
    }


def unstarted(root: Path, found: list[Path]) -> list[dict]:
    """Rows of `frame runs` for the members of the sweep at `root` that have no run (cancelled before
    they started, or still queued): only its sweep.json (frame.launch.sweep) knows them."""
    try:
        members = json.loads((Path(root) / "sweep.json").read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    have = {Path(run_dir).resolve() for run_dir in found}
    rows = []
    for member in members:
        run_dir = Path(root) / member["run_dir"]
        if run_dir.resolve() in have:
            continue
        rows.append({"run": run_name(run_dir, root), "dir": str(run_dir), "sweep_member": True,
                     "status": member["status"], "detail": member.get("error") or "", "epoch": 0, "epochs": None,
                     "monitor": "", "best": None, "best_epoch": None, "wall_time_s": None,
                     "attempts": member.get("attempts", 0), "wandb_id": None, "test": None, "config_hash": None,
                     "git": None})
    return rows


def run_name(run_dir: Path, root: Path) -> str:
    """How a run is called under `root`: its relative path (`sweep/<overrides>`), or its own name for root itself."""
    relative = Path(run_dir).resolve().relative_to(Path(root).resolve()).as_posix()
    return relative if relative != "." else Path(run_dir).resolve().name


def _status(record: dict, now: float | None) -> tuple[str, str]:
    status = record.get("status")
    if not status:
        return "unknown", "no run.json"
    if status == "running":
        alive = run_record.liveness(record, now)
        if alive is False:
            return "preempted", "the process ended without recording an outcome (killed?); the same command continues"
        return "running", f"on {record.get('host')} (pid {record.get('pid')})"
    if status == "interrupted":
        return "preempted", "stopped by a signal (exit 75); the same command continues"
    if status == "failed":
        return "failed", f"exit code {record.get('exit_code')}; see train.log"
    if status == "pruned":
        pruned = record.get("pruned") or {}
        return "pruned", f"stopped by the sweep's pruner after epoch {pruned.get('epoch')}"
    return status, ""


def runs_table(root: Path, as_json: bool = False) -> int:
    """Print the runs under `root` as a table (or JSON); returns an exit code."""
    root = Path(root)
    found = find_runs(root)
    rows = [summarize(run_dir, root) for run_dir in found] + unstarted(root, found)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs under {root}")
        return 0
    from rich.console import Console
    from rich.table import Table

    colours = {"running": "cyan", "complete": "green", "pruned": "blue", "failed": "red", "preempted": "yellow", "unreadable": "red",
               "cancelled": "yellow"}
    table = Table(title=f"runs under {root}", title_justify="left")
    for column, justify in [("run", "left"), ("status", "left"), ("epoch", "right"), ("best", "right"),
                            ("test", "right"), ("wall time", "right"), ("attempts", "right"), ("W&B id", "left")]:
        table.add_column(column, justify=justify, no_wrap=column != "run", overflow="fold")  # a run name whole
    for row in rows:
        epoch = f"{row['epoch']}/{row['epochs']}" if row["epochs"] else str(row["epoch"])
        best_text = f"{row['monitor']}={row['best']:.4g}" if row["best"] is not None else "-"
        wall = format_duration(row["wall_time_s"]) if row["wall_time_s"] is not None else "-"
        test_key = "test/" + row["monitor"].removeprefix("val/")
        test = f"{row['test'][test_key]:.4g}" if row["test"] and test_key in row["test"] else "-"
        table.add_row(row["run"], f"[{colours.get(row['status'], 'white')}]{row['status']}[/]", epoch, best_text,
                      test, wall, str(row["attempts"]), row["wandb_id"] or "-")
    Console(width=max(100, Console().width)).print(table)
    return 0


def swept_parameters(members: list[Path]) -> dict[str, list[str]]:
    """For sweep members: parameter -> its value in each member, for the overrides that differ between members."""
    overrides = []
    for member in members:
        pairs = {}
        for item in _hydra_yaml(member, "overrides.yaml") or []:
            key, _, value = str(item).partition("=")
            pairs[key.lstrip("+~")] = value
        overrides.append(pairs)
    keys = sorted({k for pairs in overrides for k in pairs})
    varied = {k: [pairs.get(k, "") for pairs in overrides] for k in keys}
    return {k: values for k, values in varied.items() if len(set(values)) > 1}


def _hydra_yaml(run_dir: Path, name: str):
    import yaml

    try:
        return yaml.safe_load((Path(run_dir) / ".hydra" / name).read_text())
    except (OSError, yaml.YAMLError):
        return None
