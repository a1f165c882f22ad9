"""Offline W&B runs on disk: find them and upload them (`frame sync`).

An offline run is a folder `wandb/offline-run-<YYYYMMDD_HHMMSS>-<id>/` holding
`run-<id>.wandb`. A resumed or requeued frame run adds one folder per attempt,
all with the same id, in the run directory's `wandb/`; they must reach the
server in the order they were written, each once.

`wandb sync` (wandb >= 0.31) does both by itself: given several folders, it
groups their files by entity/project/run id, uploads the files of one run one
after the other in order of their start time (read from the file), stops a
run's later files when one fails, skips a file with a `run-<id>.wandb.synced`
marker and writes that marker after an upload. A file it cannot read stops
the whole call before anything is uploaded. Frame only finds the folders
(`wandb sync` looks one or two levels deep, a sweep nests deeper) and hands
them over in one call.

Without a network `wandb sync` retries for ever, silently: frame first checks that the
server answers (a TCP connect of PROBE_TIMEOUT_S) and stops the upload after `timeout_s`.
What was not uploaded stays offline, and the next `frame sync` uploads it.
"""

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from frame.core.errors import FrameError
from frame.tracking.wandb import reachable

PROBE_TIMEOUT_S = 5.0


@dataclass
class OfflineRun:
    folder: Path  # wandb/offline-run-<time>-<id>
    file: Path  # its run-<id>.wandb

    @property
    def synced(self) -> bool:
        return self.file.with_name(self.file.name + ".synced").exists()


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run folder under `root`, each once (`latest-run` links skipped), in path order.

    Path order keeps the attempts of one run directory together, oldest first
    (the folder name starts with the time the attempt started).
    """
    found = {}
    for folder in Path(root).rglob("offline-run-*"):
        if folder.is_symlink() or not folder.is_dir() or folder.parent.name != "wandb":
            continue
        files = sorted(folder.glob("run-*.wandb"))
        if files:
            found.setdefault(folder.resolve(), OfflineRun(folder, files[0]))
    return sorted(found.values(), key=lambda run: run.folder)


def sync(root: Path, dry_run: bool = False, timeout_s: float = 3600.0) -> int:
    """Upload the offline runs under `root` with one `wandb sync`; returns an exit code.

    A folder that `wandb sync` did not mark as uploaded counts as failed (its
    later attempts wait too); run it again to retry.

    Raises:
        FrameError: no key, or the server does not answer.
    """
    runs = offline_runs(root)
    if not runs:
        print(f"no offline W&B runs under {root}")
        return 0
    pending = [run for run in runs if not run.synced]
    if pending and not dry_run:
        _check_credentials()
        url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        if not reachable(url, PROBE_TIMEOUT_S):
            raise FrameError(
                f"cannot reach W&B at {url} (no answer within {PROBE_TIMEOUT_S:g} s); nothing was "
                f"uploaded and the {len(pending)} offline run(s) stay as they are. Run frame sync again "
                f"when this machine is online (or from one that is, with a copy of {root})."
            )
    for run in runs:
        print(f"{'already uploaded' if run.synced else 'would upload' if dry_run else 'uploading':<18}{run.folder}")
    if dry_run:
        return 0
    failed = []
    if pending:
        sys.stdout.flush()
        # cwd = root: wandb keeps its logs in ./wandb (and in the temp dir when ./wandb does not exist)
        (Path(root) / "wandb").mkdir(exist_ok=True)
        folders = [str(run.folder.relative_to(root)) for run in pending]
        returncode, output = _wandb_sync(folders, root, timeout_s)
        failed = [run for run in pending if not run.synced]
        for run in failed:
            print(f"failed            {run.folder}", file=sys.stderr)
        if returncode is None:
            print(
                f"wandb sync did not finish within {timeout_s:g} s (the network?) and was stopped; what it "
                "uploaded is marked, the rest stays offline: run frame sync again.",
                file=sys.stderr,
            )
            failed = failed or pending
        elif failed or returncode != 0:
            tail = output.strip().splitlines()[-5:]
            print(
                "wandb sync said:\n  " + "\n  ".join(tail) + "\nA folder wandb cannot read stops the whole "
                "upload: move it out of the way, then run frame sync again.",
                file=sys.stderr,
            )
            failed = failed or pending
    print(
        f"uploaded {len(pending) - len(failed)} of {len(pending)} pending; {len(runs) - len(pending)} already uploaded"
    )
    return 1 if failed else 0


def _wandb_sync(folders: list[str], root: Path, timeout_s: float) -> tuple[int | None, str]:
    """(exit code, output) of `wandb sync FOLDERS` in `root`; (None, output) when it ran past `timeout_s` and was
    stopped with the processes it started (its own session: a child left holding the pipe would block us)."""
    with subprocess.Popen(
        [sys.executable, "-m", "wandb", "sync", *folders],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output = process.communicate(timeout=timeout_s)[0]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            try:
                output = process.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:  # a process of its own session still holds the pipe
                output = ""
            return None, output
    return process.returncode, output


def _check_credentials() -> None:
    if os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if host and host in netrc.read_text():
            return
    except OSError:
        pass
    raise FrameError(
        "frame sync needs a W&B key: export WANDB_API_KEY=<key> (or run `wandb login` once on "
        "this machine) and run it again."
    )
