"""The run-directory policy: never overwrite an earlier run by accident.

`resume=true` continues a run found in the directory, `resume=false` refuses
to touch it, `fresh=true` moves it aside (`<dir>.<timestamp>`) and starts over.
"""

import logging
import time
from pathlib import Path

from frame.errors import FrameError

log = logging.getLogger("frame")


def holds_run(directory: Path) -> bool:
    """A directory holds a run once it has checkpoints or logged metrics; a sweep once it has a summary
    (frame.sweep) or a member with either."""
    if not directory.is_dir():
        return False
    return any(directory.glob("checkpoints/*.pt")) or any(directory.glob("metrics.jsonl")) or any(
        directory.glob("*/checkpoints/*.pt")
    ) or any(directory.glob("*/metrics.jsonl")) or (directory / "sweep.json").is_file()


def claim(directory: Path, *, resume: bool, fresh: bool) -> None:
    """Apply the policy to `directory` before anything is written into it."""
    if not holds_run(directory):
        return
    if fresh:
        archive = directory.with_name(f"{directory.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        directory.rename(archive)
        log.warning("fresh=true: moved the earlier run to %s", archive)
        print(f"frame: fresh=true: moved the earlier run to {archive}")
    elif not resume:
        raise FrameError(
            f"{directory} already holds a run and resume=false. Continue it with resume=true, "
            f"pick another name with name=<new>, or start over with fresh=true "
            f"(moves the old run aside, deletes nothing)."
        )
