"""Offline W&B runs on disk: find them, read their history, upload them (`frame sync`).

An offline run is a folder `wandb/offline-run-<YYYYMMDD_HHMMSS>-<id>/` holding
`run-<id>.wandb`: a LevelDB-style log (a 7-byte header `:W&B` + magic + version,
then 32 KiB blocks of records, each `crc32 | length | type` + payload, long
records split FIRST/MIDDLE/LAST) of `wandb.proto.wandb_internal_pb2.Record`
messages. In wandb 0.31 the history lives only there. A resumed or requeued
frame run adds one folder per attempt, all with the same id; they must reach
the server in the order they were written, each once (`wandb sync` leaves a
`run-<id>.wandb.synced` marker next to a file it uploaded).
"""

import json
import logging
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from frame.errors import FrameError

log = logging.getLogger("frame")

_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path):
    """Yield every `wandb_internal_pb2.Record` in a `run-*.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    position, parts = _HEADER, []
    while position + _HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _HEADER:  # the writer pads the tail of a block
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + _HEADER])
        position += _HEADER
        if kind == 0 and length == 0:
            continue
        parts.append(data[position:position + length])
        position += length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def history(path: Path) -> list[dict]:
    """The history rows of a `run-*.wandb` file: `{"_step": ..., "<metric>": value, ...}`, in order."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def run_record(path: Path):
    """The `Run` message (id, project, group, start time, ...) of a `run-*.wandb` file."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return record.run
    return None


@dataclass
class OfflineRun:
    folder: Path  # wandb/offline-run-<time>-<id>
    file: Path  # its run-<id>.wandb
    run_id: str
    started: float  # seconds since the epoch, from the file (folder time as a fallback)

    @property
    def synced(self) -> bool:
        return self.file.with_name(self.file.name + ".synced").exists()


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run folder under `root` (each once; `latest-run` links skipped), oldest first per run id."""
    found = {}
    for folder in Path(root).rglob("offline-run-*"):
        if folder.is_symlink() or not folder.is_dir() or folder.parent.name != "wandb":
            continue
        files = sorted(folder.glob("run-*.wandb"))
        if not files:
            continue
        run_id = folder.name.rsplit("-", 1)[-1]
        try:
            run = run_record(files[0])
            started = run.start_time.seconds + run.start_time.nanos / 1e9 if run is not None else None
        except (OSError, ValueError):
            started = None
        if not started:
            started = files[0].stat().st_mtime
        found[folder.resolve()] = OfflineRun(folder, files[0], run_id, started)
    # runs in order of their first attempt; within a run, attempts in the order they started
    first = {}
    for run in found.values():
        first[run.run_id] = min(first.get(run.run_id, run.started), run.started)
    return sorted(found.values(), key=lambda r: (first[r.run_id], r.run_id, r.started))


def sync(root: Path, dry_run: bool = False) -> int:
    """Upload the offline runs under `root` with `wandb sync`, attempt by attempt; returns an exit code.

    An attempt that fails to upload stops the later attempts of the same run
    (they would land out of order); other runs go on. Run it again to retry.
    """
    runs = offline_runs(root)
    if not runs:
        print(f"no offline W&B runs under {root}")
        return 0
    pending = [run for run in runs if not run.synced]
    if pending and not dry_run:
        _check_credentials()
    failed_ids, uploaded = set(), 0
    for run in runs:
        if run.synced:
            print(f"already uploaded  {run.folder}")
            continue
        if run.run_id in failed_ids:
            print(f"skipped           {run.folder} (an earlier attempt of run {run.run_id} failed)")
            continue
        if dry_run:
            print(f"would upload      {run.folder}")
            continue
        print(f"uploading         {run.folder}", flush=True)
        # cwd = the run directory: wandb writes its sync logs to ./wandb/logs
        result = subprocess.run([sys.executable, "-m", "wandb", "sync", str(run.folder.resolve())],
                                cwd=run.folder.parent.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if result.returncode != 0 or not run.synced:
            failed_ids.add(run.run_id)
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            print(f"failed            {run.folder}:\n  " + "\n  ".join(tail), file=sys.stderr)
        else:
            uploaded += 1
    if not dry_run:
        print(f"uploaded {uploaded} of {len(pending)} pending; {len(runs) - len(pending)} already uploaded")
    return 1 if failed_ids else 0


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
    raise FrameError("frame sync needs a W&B key: export WANDB_API_KEY=<key> (or run `wandb login` once on "
                     "this machine) and run it again.")
