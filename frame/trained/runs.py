"""Looking at runs without any service: `frame runs` and the data behind `frame plot`.

A run is a directory with `run.json` (written by the training process, see
`frame.core.run_record`) and `metrics.jsonl`. Everything here reads files only, never
imports torch, and works on a copy of `outputs/` on a laptop.

Status shown:
    running     run.json says running and the process is alive (same host: pid and
                process start time; another host: a heartbeat younger than 5 min)
    complete    finished all epochs
    failed      an exception or a non-zero exit other than 75
    refused     a user error (exit 2) before it trained; sweep.json says the same of that member
    preempted   stopped by a signal / SLURM (exit 75), or its process vanished
                without recording an outcome (killed); the same command continues it
    cancelled   a sweep member cancelled before it started (`scancel`): it has no run
                directory, its sweep's sweep.json says so; the same command runs it
"""

import json
from pathlib import Path

from frame.config.rundir import result_overrides, run_suffix
from frame.core import run_record
from frame.core.state_files import DamagedFile, holds_run, read_bytes, read_object
from frame.tracking.console import format_duration
from frame.tracking.jsonl import best, read_metrics

_SKIP = {"wandb", ".hydra", "checkpoints", "examples"}


def find_runs(root: Path) -> list[Path]:
    """Run directories under `root` (itself included), sorted by path: those that hold a run
    (`frame.core.state_files.holds_run`, the rule a new run's take-back follows too)."""
    root = Path(root)
    found = []

    def walk(directory: Path, depth: int):
        if holds_run(directory):
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
    """One row of `frame runs`; a run whose files are damaged (run.json garbage, a FIFO, fields of
    the wrong type) is one `unreadable` row naming the file, never the end of the table."""
    try:
        return _summary(run_dir, root, now)
    except DamagedFile as error:  # metrics.jsonl a FIFO or a directory
        return {
            **_EMPTY,
            "run": run_name(run_dir, root),
            "dir": str(run_dir),
            "status": "unreadable",
            "detail": str(error),
        }
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as error:
        return {
            **_EMPTY,
            "run": run_name(run_dir, root),
            "dir": str(run_dir),
            "status": "unreadable",
            "detail": f"{Path(run_dir) / run_record.FILENAME} has a field of the wrong type "
            f"({type(error).__name__}: {error}); the other runs are listed",
        }


_EMPTY = {
    "sweep_member": False,
    "epoch": 0,
    "epochs": None,
    "monitor": "",
    "best": None,
    "best_epoch": None,
    "wall_time_s": None,
    "attempts": 0,
    "wandb_id": None,
    "overrides": [],
    "test": None,
    "config_hash": None,
    "git": None,
}


def _summary(run_dir: Path, root: Path, now: float | None) -> dict:
    record = run_record.read(run_dir)
    records = read_metrics(run_dir)
    metric, maximize = monitor_of(run_dir, record)
    value, best_epoch = best(records, metric, maximize)
    status, detail = _status(record, now)
    if problem := run_record.damage(run_dir):
        status, detail = "unreadable", problem
    epochs_done = max((r.get("epoch", 0) for r in records if any(k.startswith("val/") for k in r)), default=0)
    epochs, attempts, test = record.get("epochs"), record.get("attempts", []), record.get("test")
    if (
        not (epochs is None or isinstance(epochs, int))
        or not isinstance(attempts, list)
        or not (test is None or isinstance(test, dict) and all(isinstance(v, (int, float, str)) for v in test.values()))
    ):
        raise TypeError("epochs, attempts or test")
    return {
        "run": run_name(run_dir, root),
        "dir": str(run_dir),
        "sweep_member": (Path(run_dir).parent / "multirun.yaml").is_file(),
        "status": str(status),
        "detail": detail,
        "epoch": epochs_done,
        "epochs": epochs,
        "monitor": str(metric),
        "best": value,
        "best_epoch": best_epoch,
        "wall_time_s": round(run_record.wall_time(record, now), 1) if record else None,
        "attempts": len(attempts),
        "wandb_id": str(record["wandb_id"]) if record.get("wandb_id") else None,
        "overrides": result_overrides(_listed(_hydra_yaml(run_dir, "overrides.yaml"))),  # what makes it this run
        "test": test,  # data.test scored with best.pt after training (frame.training.loop)
        "config_hash": record.get("config_hash"),
        "git": record.get("git"),
    }


def unstarted(root: Path, found: list[Path]) -> list[dict]:
    """Rows of `frame runs` for the members of the sweep at `root` that have no run (cancelled before
    they started, or still queued): only its sweep.json (frame.launch.sweep) knows them."""
    try:
        members = (read_object(Path(root) / "sweep.json") or {}).get("members")
    except DamagedFile:
        return []
    have = {Path(run_dir).resolve() for run_dir in found}
    rows = []
    for member in members if isinstance(members, list) else []:
        if not (
            isinstance(member, dict)
            and isinstance(member.get("run_dir"), str)
            and isinstance(member.get("status"), str)
        ):
            continue
        run_dir = Path(root) / member["run_dir"]
        if run_dir.resolve() in have:
            continue
        rows.append(
            {
                **_EMPTY,
                "run": run_name(run_dir, root),
                "dir": str(run_dir),
                "sweep_member": True,
                "status": member["status"],
                "detail": member.get("error") or "",
                "attempts": member.get("attempts", 0),
            }
        )
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
    if status == "refused":
        return "refused", "a user error (exit 2) before it trained; see train.log"
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

    colours = {
        "running": "cyan",
        "complete": "green",
        "pruned": "blue",
        "failed": "red",
        "preempted": "yellow",
        "unreadable": "red",
        "cancelled": "yellow",
        "refused": "magenta",
    }
    table = Table(title=f"runs under {root}", title_justify="left")
    hidden = {row["dir"]: _hidden_overrides(row) for row in rows}
    with_overrides = any(hidden.values())  # the column only when a run's name does not show its overrides
    for column, justify in [
        ("run", "left"),
        ("status", "left"),
        ("epoch", "right"),
        ("best", "right"),
        ("test", "right"),
        ("wall time", "right"),
        ("attempts", "right"),
        ("W&B id", "left"),
        *([("overrides", "left")] if with_overrides else []),
    ]:
        table.add_column(column, justify=justify, no_wrap=column not in ("run", "overrides"), overflow="fold")
    for row in rows:
        epoch = f"{row['epoch']}/{row['epochs']}" if row["epochs"] else str(row["epoch"])
        best_text = f"{row['monitor']}={row['best']:.4g}" if row["best"] is not None else "-"
        wall = format_duration(row["wall_time_s"]) if row["wall_time_s"] is not None else "-"
        test_key = "test/" + row["monitor"].removeprefix("val/")
        test = f"{row['test'][test_key]:.4g}" if row["test"] and test_key in row["test"] else "-"
        table.add_row(
            row["run"],
            f"[{colours.get(row['status'], 'white')}]{row['status']}[/]",
            epoch,
            best_text,
            test,
            wall,
            str(row["attempts"]),
            row["wandb_id"] or "-",
            *([hidden[row["dir"]] or "-"] if with_overrides else []),
        )
    Console(width=max(100, Console().width)).print(table)
    return 0


def _hidden_overrides(row: dict) -> str:
    """The overrides a run carries that its name does not show (a run named with `name=`, a suffix cut short and
    hashed); '' for the others (`outputs/<name>+<overrides>`, a sweep member named by its swept values)."""
    suffix = run_suffix(row["overrides"])
    if row["sweep_member"] or not row["overrides"] or (Path(row["dir"]).name.endswith(suffix) and "~" not in suffix):
        return ""
    return " ".join(row["overrides"])


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


def _listed(value) -> list[str]:
    """A .hydra list as strings; a damaged one (a mapping, a number) as none."""
    return [str(item) for item in value] if isinstance(value, list) else []


def _hydra_yaml(run_dir: Path, name: str):
    import yaml

    try:
        return yaml.safe_load(read_bytes(Path(run_dir) / ".hydra" / name) or b"")
    except (DamagedFile, yaml.YAMLError, RecursionError):
        return None
