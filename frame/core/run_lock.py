"""One process per run directory: `<run dir>/.lock`, created with O_EXCL.

Two processes training into one directory overwrite each other's checkpoints and cut each
other's metrics, so the second one must stop before it writes anything. `flock` is not enough
where SLURM jobs run (off or per-client on some NFS and Lustre mounts), but an exclusive create
is atomic there too. The file names its holder and carries a heartbeat the holder refreshes:

    {"host": "node12", "pid": 4242, "proc_start": 881234, "since": 1795477108.1,
     "heartbeat": 1795477168.1, "slurm_job_id": "17"}

A lock whose holder is gone is taken over with a warning: on the same host when the pid with
its start time no longer exists, on another host when the heartbeat is older than
`STALE_AFTER_S`. A requeued SLURM job (same job id) takes its own lock back at once.

A single run takes its lock early (`claim_early`, from the preflight callback), before Hydra
writes `.hydra/` into the directory: a second process is refused before it overwrites the live
run's config files, and the run's own `RunLock` later adopts the lock. The claim also keeps
`.hydra/` as it was, so an attempt refused before it trains (a resume the guard refuses) puts
the run's config files back (`put_back_hydra_files`): they must keep describing its checkpoints.
"""

import atexit
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from frame.core.atomic import write_file
from frame.core.errors import FrameError
from frame.core.signals import install_early
from frame.core.state_files import DamagedFile, read_object

log = logging.getLogger("frame")

FILENAME = ".lock"
HEARTBEAT_S = 60.0  # how often a live run refreshes its heartbeats (the lock's and run.json's)
STALE_AFTER_S = 5 * HEARTBEAT_S  # a holder on another host with an older heartbeat is gone
_TRIES = 5  # takeovers raced by other processes before giving up
_EARLY: dict[Path, dict] = {}  # run directory -> the lock this process claimed early (its file's content)
_HYDRA_FILES: dict[Path, dict[str, bytes]] = {}  # run directory -> its .hydra/ files before this attempt
_ENTRIES: dict[Path, set[str]] = {}  # run directory -> the names in it before this attempt


class RunLocked(FrameError):
    """Another live process trains in this run directory."""


def process_start(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks since boot (Linux), to tell a reused pid apart; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:  # not Linux: existence only
            os.kill(pid, 0)
            return 0
        except (OSError, ValueError):
            return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def every(period_s: float, action, name: str) -> threading.Event:
    """Call `action()` every `period_s` in a daemon thread until the returned event is set.

    An OSError (a full or vanished disk) must not kill training: the next call retries.
    """
    stop = threading.Event()

    def loop():
        while not stop.wait(period_s):
            try:
                action()
            except (OSError, FrameError):  # WriteError is a FrameError
                pass

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop


class RunLock:
    """Context manager: hold `<run_dir>/.lock` while training, refreshing its heartbeat.

    Raises:
        RunLocked: a live process holds the directory (the message names it).
    """

    def __init__(self, run_dir: Path, heartbeat_s: float = HEARTBEAT_S):
        self.path = Path(run_dir) / FILENAME
        self.heartbeat_s = heartbeat_s
        self.mine: dict | None = None
        self._stop: threading.Event | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        if self.heartbeat_s > 0:
            self._stop = every(self.heartbeat_s, self.beat, "frame-lock-heartbeat")
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
        self.release()

    def acquire(self) -> None:
        early = _EARLY.pop(self.path.parent.resolve(), None)
        if early is not None and _same(read(self.path), early):  # claimed by this process's preflight
            self.mine = early
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(_TRIES):
            now = time.time()
            me = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "proc_start": process_start(os.getpid()),
                "since": now,
                "heartbeat": now,
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            }
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read(self.path)
                gone = why_gone(holder, self.path)
                if gone is None:
                    raise RunLocked(
                        f"{self.path.parent} is in use by {describe(holder)}. "
                        f"Wait for it to end, stop it, or pick another name with name=<new>. "
                        f"If that process is gone, delete {self.path}."
                    ) from None
                if self._take_over(holder):
                    log.warning("taking over the run directory's lock from %s: %s", describe(holder), gone)
                continue
            with os.fdopen(fd, "w") as file:
                file.write(json.dumps(me) + "\n")
                file.flush()
                os.fsync(file.fileno())
            self.mine = me
            return
        raise RunLocked(f"{self.path.parent}: other processes keep taking its lock ({self.path}); try again.")

    def _take_over(self, holder: dict) -> bool:
        """Move the dead holder's lock aside; put back one that turned out fresh (another taker's)."""
        aside = self.path.with_name(f"{FILENAME}.stale.{socket.gethostname()}.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another process took it over first
            return False
        if read(aside) != holder:  # not the lock we judged: restore it unless a newer one exists
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def beat(self) -> None:
        """Refresh the heartbeat while the lock is still this process's."""
        if self.mine is None or not _same(read(self.path), self.mine):
            return
        self.mine = {**self.mine, "heartbeat": time.time()}
        write_file(self.path, json.dumps(self.mine) + "\n")

    def release(self) -> None:
        if self.mine is not None and _same(read(self.path), self.mine):
            self.path.unlink(missing_ok=True)
        self.mine = None


def claim_early(run_dir: Path) -> None:
    """Take `run_dir`'s lock now, before Hydra writes into it, and keep its `.hydra/` files.

    Raises:
        RunLocked: a live process holds the directory.
    """
    install_early()  # first: a stop signal the moment the lock exists sets the run's flag (the run releases
    lock = RunLock(run_dir, heartbeat_s=0)  # the lock on its way out) instead of killing it with the lock held
    lock.acquire()
    key = Path(run_dir).resolve()
    _EARLY[key] = lock.mine
    _ENTRIES[key] = {entry.name for entry in key.iterdir()} - {FILENAME}  # what a refused new run must leave
    hydra = key / ".hydra"
    _HYDRA_FILES[key] = {p.name: p.read_bytes() for p in hydra.iterdir() if p.is_file()} if hydra.is_dir() else {}
    atexit.register(_release_unadopted, key, lock)


def entries_at_claim(run_dir: Path) -> set[str] | None:
    """The names in `run_dir` before this process claimed it (its lock aside); None when it did not claim it early."""
    return _ENTRIES.get(Path(run_dir).resolve())


def put_back_hydra_files(run_dir: Path) -> None:
    """Write back the `.hydra/` files the early claim found, and remove the ones it did not (an attempt
    refused before it trained)."""
    files = _HYDRA_FILES.get(Path(run_dir).resolve())
    if files is None:
        return
    hydra = Path(run_dir) / ".hydra"
    for made in (p for p in hydra.iterdir() if p.is_file() and p.name not in files) if hydra.is_dir() else ():
        made.unlink()  # written by this attempt alone
    for name, content in files.items():
        path = Path(run_dir) / ".hydra" / name
        if not path.is_file() or path.read_bytes() != content:
            write_file(path, content)


def _release_unadopted(key: Path, lock: RunLock) -> None:
    """At exit: release an early lock no run adopted (Hydra failed between the claim and the task)."""
    if _EARLY.pop(key, None) is not None:
        lock.release()


def read(path: Path) -> dict:
    """The holder named in a lock file; {} when it is unreadable (being written, or damaged).

    Raises:
        DamagedFile: a FIFO or a directory is there (never read: it would block or never age).
    """
    try:
        return read_object(Path(path)) or {}
    except DamagedFile:
        if Path(path).is_file():
            return {}
        raise


def why_gone(holder: dict, path: Path, now: float | None = None) -> str | None:
    """Why the holder of a lock no longer holds it, or None while it may still be alive."""
    now = now or time.time()
    job = os.environ.get("SLURM_JOB_ID")
    if job and holder.get("slurm_job_id") == job:
        return f"an earlier attempt of SLURM job {job} (requeued)"
    if not holder:
        try:
            age = now - path.stat().st_mtime
        except OSError:
            return "it vanished"
        return f"an unreadable lock file {age:.0f} s old" if age > STALE_AFTER_S else None
    if holder.get("host") == socket.gethostname():
        pid = holder.get("pid")
        alive = isinstance(pid, int) and pid > 0 and process_start(pid) == holder.get("proc_start")
        return None if alive else f"pid {pid} no longer exists"
    age = now - float(holder.get("heartbeat", 0))
    return f"no heartbeat for {age:.0f} s" if age > STALE_AFTER_S else None


def describe(holder: dict) -> str:
    if not holder:
        return "a process that is still writing its lock file"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job} (since {since})"


def _same(a: dict, b: dict) -> bool:
    return all(a.get(key) == b.get(key) for key in ("host", "pid", "proc_start", "since"))
