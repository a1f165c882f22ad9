"""`run.json`: who a run is and how it is doing, written by the process that trains it.

One file per run directory, rewritten atomically:

    {
      "name": "organs", "status": "running", "exit_code": null,
      "wandb_id": "k3j9x0a1", "config_hash": "...", "git": {"commit": "...", "dirty": false},
      "frame_version": "0.1.0", "monitor": "val/dice", "monitor_mode": "max",
      "host": "node12", "pid": 4242, "heartbeat": 1795477108.1, "hosts": ["node12", "node13"],
      "attempts": [{"started": ..., "ended": ..., "status": ..., "exit_code": ..., "host": ...,
                    "hosts": [...], "pid": ..., "slurm": {"job_id": "17", "restart_count": "1", ...}}, ...]

`host` and `pid` are rank 0's; `hosts` names every rank's host in rank order (the latest
attempt's at the top level: a requeued multi-node job may land on other nodes).
    }

`status` is `running`, `complete`, `pruned` (an Optuna sweep's pruner stopped it after an epoch,
with a checkpoint: exit 0, see frame.training.trial), `interrupted` (exit code 75: a signal, a
preemption or a time limit; the same command continues) or `failed`. An attempt
refused before it trained (a user error, exit 2: a refused resume, a bad value)
is recorded as `refused` and leaves the run's status as it was. A process
that dies without a word (SIGKILL, out of memory, a lost node) leaves `running`
behind; `liveness()` tells that apart from a live run: on the same host the
pid must still exist and be the same process (its start time), on another host
the heartbeat (refreshed every `HEARTBEAT_S` by a thread) must be recent.

The W&B logger stores its run id here on the first attempt and reads it back
on every later one, so a resumed or requeued run continues the same W&B run.
Nothing secret goes into this file: it holds ids, hashes and times only.
"""

import json
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from frame.core.atomic import WriteError, write_file
from frame.core.errors import FrameError
from frame.core.exits import EXIT_USER_ERROR, code_of_exception, status_of
from frame.core.ranks import global_rank
from frame.core.run_lock import HEARTBEAT_S, STALE_AFTER_S, every, process_start
from frame.core.state_files import DamagedFile, read_object, read_or_keep_aside
from frame.core.version import __version__

log = logging.getLogger("frame")

FILENAME = "run.json"
_SLURM_VARS = {  # run.json key -> environment variable
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "restart_count": "SLURM_RESTART_COUNT",
    "node": "SLURMD_NODENAME",
}
_lock = threading.Lock()  # one writer at a time within the process (heartbeat thread, loggers)


def read(run_dir: Path) -> dict:
    """The run's record, or {} when there is none or it is damaged (`damage` says how). Never blocks."""
    try:
        return read_object(Path(run_dir) / FILENAME) or {}
    except DamagedFile:
        return {}


def damage(run_dir: Path) -> str | None:
    """What is wrong with the run's run.json (garbage, a FIFO, a directory), or None when it is fine or absent."""
    try:
        read_object(Path(run_dir) / FILENAME)
    except DamagedFile as error:
        return str(error)
    return None


def update(run_dir: Path, **fields) -> dict:
    """Merge `fields` into run.json (atomically) and return the new record; a damaged run.json is kept
    beside as run.json.damaged-<time> (frame.core.state_files)."""
    with _lock:
        record = read_or_keep_aside(Path(run_dir) / FILENAME)
        record.update(fields)
        _write(Path(run_dir), record)
        return record


def _write(run_dir: Path, record: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_file(run_dir / FILENAME, json.dumps(record, indent=2) + "\n")


class RunRecord:
    """Context manager around one attempt: `running` on entry, the outcome on exit.

    Args:
        run_dir: the run directory.
        heartbeat_s: refresh period of `heartbeat`; 0 disables the thread (tests).
        enabled: whether this process keeps the record (rank 0 owns side effects); None = decide by
            the environment (`frame.core.ranks.global_rank`).
        hosts: each rank's host in rank order (`World.hosts`); None = this host alone.
        **fields: written into run.json at the start, e.g. name, monitor, monitor_mode, epochs
            (what `frame runs` shows).
    """

    def __init__(
        self,
        run_dir: Path,
        heartbeat_s: float = HEARTBEAT_S,
        enabled: bool | None = None,
        hosts: list[str] | None = None,
        **fields,
    ):
        self.run_dir = Path(run_dir)
        self.hosts = hosts
        self.fields = fields
        self.heartbeat_s = heartbeat_s
        self._stop = None
        self._before = {}  # the run's status and exit code before this attempt: kept when it is refused
        self.trained = False  # set before training starts: a user error until then refuses the attempt
        self.enabled = global_rank() == 0 if enabled is None else enabled  # rank 0 owns side effects

    def __enter__(self) -> "RunRecord":
        if not self.enabled:
            return self
        now = time.time()
        attempt = {
            "started": now,
            "ended": None,
            "status": "running",
            "exit_code": None,
            "host": socket.gethostname(),
            "hosts": self.hosts or [socket.gethostname()],
            "pid": os.getpid(),
        }
        slurm = {key: os.environ[var] for key, var in _SLURM_VARS.items() if var in os.environ}
        if slurm:
            attempt["slurm"] = slurm
        with _lock:
            record = read_or_keep_aside(self.run_dir / FILENAME)  # DamagedFile (a FIFO, a directory): exit 2
            self._before = {
                "status": record.get("status", "refused"),
                "exit_code": record.get("exit_code", EXIT_USER_ERROR),
            }
            record.update(
                **self.fields,
                status="running",
                exit_code=None,
                frame_version=__version__,
                git=git_state(Path.cwd()),
                host=attempt["host"],
                hosts=attempt["hosts"],
                pid=attempt["pid"],
                proc_start=process_start(os.getpid()),
                heartbeat=now,
            )
            record["attempts"] = [*record.get("attempts", []), attempt]
            record.pop("pruned", None)  # an earlier attempt's verdict (frame.training.trial): this one is its own
            try:
                _write(self.run_dir, record)
            except OSError as error:  # the run directory cannot be made (a file in its place, read-only)
                raise FrameError(
                    f"cannot write {self.run_dir / FILENAME}: {error.strerror}. Nothing was changed; "
                    "free space (or make the directory writable) and run the same command."
                ) from None
        if self.heartbeat_s > 0:
            self._stop = every(self.heartbeat_s, lambda: update(self.run_dir, heartbeat=time.time()), "frame-heartbeat")
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self._stop is not None:
            self._stop.set()
        user_error = kind is not None and issubclass(kind, FrameError)
        self.finish(EXIT_USER_ERROR if user_error else code_of_exception(kind, error))

    def update(self, **fields) -> None:
        if self.enabled:
            update(self.run_dir, **fields)

    def finish(self, exit_code: int) -> None:
        if not self.enabled:
            return
        refused = exit_code == EXIT_USER_ERROR and not self.trained  # a refused resume, a bad value
        status = "refused" if refused else status_of(exit_code)
        with _lock:
            record = read(self.run_dir)  # damaged since __enter__: the outcome goes into a new record
            now = time.time()
            if status == "complete" and record.get("pruned"):  # an Optuna sweep's pruner stopped it after an epoch
                status = "pruned"
            if record.get("attempts"):
                record["attempts"][-1].update(ended=now, status=status, exit_code=exit_code)
            record.update(self._before if refused else {"status": status, "exit_code": exit_code}, heartbeat=now)
            try:
                _write(self.run_dir, record)
            except (OSError, WriteError) as error:  # reported once; the error that ended the attempt stays the message
                log.warning(
                    "could not record the outcome (%s) in %s: %s",
                    status,
                    self.run_dir / FILENAME,
                    getattr(error, "reason", None) or error.strerror,
                )


def status_of_attempt(record: dict, default: str) -> str:
    """What the last attempt in `record` ended as: `refused` (a user error before it trained), `failed`, ...;
    `default` where the record holds no attempt (a member refused before its run directory had one)."""
    attempts = record.get("attempts")
    last = attempts[-1] if isinstance(attempts, list) and attempts and isinstance(attempts[-1], dict) else {}
    status = last.get("status")
    return status if isinstance(status, str) and status != "running" else default


def liveness(record: dict, now: float | None = None) -> bool | None:
    """For a record saying `running`: True if its process is alive, False if it is gone, None if unknown."""
    if record.get("status") != "running":
        return None
    if record.get("host") == socket.gethostname() and record.get("pid"):
        start = process_start(record["pid"])
        return start is not None and start == record.get("proc_start")
    heartbeat = record.get("heartbeat")
    if heartbeat is None:
        return None
    return (now or time.time()) - heartbeat < STALE_AFTER_S


def wall_time(record: dict, now: float | None = None) -> float:
    """Seconds spent training over all attempts (a running attempt counts up to now or its last heartbeat)."""
    now = now or time.time()
    total = 0.0
    for attempt in record.get("attempts", []):
        end = attempt.get("ended")
        if end is None:
            end = now if attempt is record["attempts"][-1] and liveness(record, now) else record.get("heartbeat", now)
        total += max(0.0, end - attempt["started"])
    return total


def git_state(directory: Path) -> dict | None:
    """{"commit", "dirty"} of the git work tree holding `directory` (the user's project), None outside one."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
