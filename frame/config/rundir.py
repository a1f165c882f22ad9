"""The run-directory policy: never overwrite an earlier run by accident.

A run's directory is named after its job and the overrides that change what it trains
(`run_suffix`): the same command finds its run and continues it, a command that changes the
result starts a run of its own beside it. `resume=true` continues a run found in the directory,
`resume=false` refuses to touch it, `fresh=true` moves it aside (`<dir>.<timestamp>`) and starts over.
A directory a live process trains in (its `.lock`, `frame.core.run_lock`) is refused
whatever the flags say, and a sweep member's directory must stay inside its sweep's.
"""

import functools
import hashlib
import json
import logging
import os
import time
from pathlib import Path

from frame.core import run_lock
from frame.core.errors import FrameError

log = logging.getLogger("frame")

# Overrides that say how, where or with what records to run, not what is trained (data.test is scored after
# training): they keep the run's directory, and the resume guard lets a run continue with them changed.
# `name=` names the directory itself, and so does an experiment, through the `name:` it sets.
SAME_RUN = (
    "name",
    "resume",
    "fresh",
    "force_resume",
    "experiment",
    "hparams_search",
    "debug",
    "local",
    "project",
    "hydra",
    "logger",
    "data.num_workers",
    "data.preload",
    "data.test",
    "trainer.device",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_epochs",
    "trainer.checkpoint_every_n_steps",
    "trainer.checkpoint_every_n_minutes",
    "trainer.keep_last_checkpoints",
    "trainer.dist_timeout_s",
    "trainer.compile",
    "trainer.channels_last",
)
LONGEST_SUFFIX = 80  # bytes of overrides kept readable in a directory name; a longer suffix ends in a hash


def run_suffix(overrides) -> str:
    """What the command-line `overrides` add to `outputs/<name>`: `+key=value,key=value` for those that change
    the result (sorted, so their order does not matter), '' for none or when `name=` is given.

    The suffix is a pure function of the overrides, so running the same command again finds the same
    directory. A '/' in a value becomes '_'; past LONGEST_SUFFIX bytes it is cut and a hash of the whole
    keeps two long suffixes apart.
    """
    lines = [str(line) for line in overrides]
    if any(_key(line) == "name" for line in lines):
        return ""
    kept = result_overrides(lines)
    if not kept:
        return ""
    suffix = ",".join(kept).replace("/", "_")
    if len(suffix.encode()) > LONGEST_SUFFIX:
        digest = hashlib.sha1(",".join(kept).encode()).hexdigest()[:8]
        suffix = suffix.encode()[: LONGEST_SUFFIX - 9].decode(errors="ignore") + "~" + digest
    return "+" + suffix


def result_overrides(overrides) -> list[str]:
    """The overrides among `overrides` that change what is trained (not SAME_RUN's), sorted."""
    return sorted(str(line) for line in overrides if not _same_run(_key(str(line))))


def _key(line: str) -> str:
    """`+model.dropout=0.2` -> model.dropout; `local@_global_=other` -> local; `~trainer.x` -> trainer.x."""
    return line.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def _same_run(key: str) -> bool:
    return any(key == k or key.startswith((k + ".", k + "/")) for k in SAME_RUN)


def holds_run(directory: Path) -> bool:
    """A directory holds a run once it has checkpoints or logged metrics; a sweep once it has a summary
    (frame.launch.sweep) or a member with either."""
    if not directory.is_dir():
        return False
    return (
        any(directory.glob("checkpoints/*.pt"))
        or any(directory.glob("metrics.jsonl"))
        or any(directory.glob("*/checkpoints/*.pt"))
        or any(directory.glob("*/metrics.jsonl"))
        or (directory / "sweep.json").is_file()
    )


def claim(directory: Path, *, resume: bool, fresh: bool, sweep: bool = False) -> None:
    """Apply the policy to `directory` (a single run's, or with `sweep` a sweep's) before anything is written into it.

    Raises:
        FrameError: it holds a run and resume=false; a live process trains in it
            (`frame.core.run_lock.RunLocked`); fresh=true could not move the old run aside; it holds the
            other kind (a sweep where a single run goes: `name=a-sweep` beside `-m name=a`).
    """
    check_name_lengths(directory)
    other = [f for f in (("run.json",) if sweep else ("sweep.json", "multirun.yaml")) if (directory / f).is_file()]
    if other:
        kind, this = ("a single run", "this sweep") if sweep else ("a sweep", "this single run")
        raise FrameError(
            f"{directory} holds {kind} ({other[0]}), but {this} would run there; nothing was changed. "
            f"Pick another name with name=<new>."
        )
    holder = run_lock.read(directory / run_lock.FILENAME) if (directory / run_lock.FILENAME).exists() else None
    if holder is not None and run_lock.why_gone(holder, directory / run_lock.FILENAME) is None:
        raise run_lock.RunLocked(
            f"{directory} is in use by {run_lock.describe(holder)}. Wait for it to end, "
            f"stop it, or pick another name with name=<new>."
        )
    check_writable(directory)
    if not holds_run(directory):
        return
    if fresh:
        archive = directory.with_name(f"{directory.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            directory.rename(archive)
        except OSError as error:
            raise FrameError(
                f"fresh=true: cannot move the earlier run {directory} aside to {archive} "
                f"({error.strerror}); nothing was changed. Fix that, or pick another name with "
                f"name=<new>."
            ) from None
        log.warning("fresh=true: moved the earlier run to %s", archive)
        print(f"frame: fresh=true: moved the earlier run to {archive}")
    elif not resume:
        raise FrameError(
            f"{directory} already holds a run and resume=false. Continue it with resume=true, "
            f"pick another name with name=<new>, or start over with fresh=true "
            f"(moves the old run aside, deletes nothing)."
        )


def check_member_dir(member_dir: Path, sweep_dir: Path, overrides) -> None:
    """A sweep member's directory, named by its overrides, must be a directory inside the sweep's.

    Raises:
        FrameError: a value such as `x/../../..` takes it elsewhere, or a name is longer than the
            filesystem allows.
    """
    member, root = os.path.abspath(member_dir), os.path.abspath(sweep_dir)
    if os.path.commonpath([member, root]) != root or member == root:
        raise FrameError(
            f"the sweep member {' '.join(overrides)} would run in {member}, outside its sweep's "
            f"directory {root}: its directory is named after its override values, so a value with "
            f"'..' or '/' cannot be one; exclude the key with hydra.job.config.override_dirname."
            f"exclude_keys or change the value."
        )
    check_name_lengths(Path(member))


def check_writable(directory: Path) -> None:
    """Raise FrameError unless this process can write the run there: Hydra writes `.hydra/` and
    opens train.log before frame runs, and would end a read-only resume in a traceback."""
    existing = Path(os.path.abspath(directory))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    for path in (existing, existing / "checkpoints", existing / ".hydra"):
        if path.exists() and not os.access(path, os.W_OK):
            read_only = os.statvfs(path).f_flag & os.ST_RDONLY
            raise FrameError(
                f"{path} is not writable ({'a read-only file system' if read_only else 'permission denied'})"
                f": this run cannot record or checkpoint there; nothing was changed. Make it writable, "
                f"or copy the run elsewhere and run there."
            )


def check_name_lengths(directory: Path) -> None:
    """Raise FrameError when a component of `directory` is longer than the filesystem allows
    (a traceback from mkdir otherwise)."""
    limit = _name_max(os.path.dirname(os.path.abspath(directory)))
    for part in Path(directory).parts:
        if len(part.encode()) > limit:
            raise FrameError(
                f"the directory name '{part[:40]}...' is {len(part.encode())} bytes long; this "
                f"filesystem allows {limit}. Choose a shorter name (a sweep member's is made of its "
                f"override values)."
            )


@functools.lru_cache(maxsize=64)
def _name_max(parent: str) -> int:
    """The longest name the filesystem of `parent` (or of its nearest existing ancestor) allows; asked once
    for all the members of a sweep."""
    existing = Path(parent)
    while not os.path.isdir(existing) and existing != existing.parent:  # isdir: False (no error) on a long name
        existing = existing.parent
    try:
        return os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def lost_history(directory: Path) -> str | None:
    """What shows that `directory` trained epochs although it has no checkpoint to resume from, or None.

    Starting such a run from epoch 1 would erase its history (metrics.jsonl is cut back to the
    resumed step): the caller refuses instead.
    """
    checkpoints = directory / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.glob("*.pt")):
        return None
    found = []
    epochs = _last_epoch(directory / "metrics.jsonl")
    if epochs:
        found.append(f"metrics.jsonl logged {epochs} epoch(s)")
    try:
        record = json.loads((directory / "run.json").read_text())
    except (OSError, ValueError):
        record = {}
    attempts = record.get("attempts") if isinstance(record, dict) else None
    if isinstance(attempts, list) and any(isinstance(a, dict) and a.get("status") == "complete" for a in attempts):
        found.append("run.json records a completed attempt")
    if not found:
        return None
    where = (
        f"{checkpoints} is a file, not a directory" if checkpoints.is_file() else f"{checkpoints} holds no checkpoint"
    )
    return f"{where}, but {' and '.join(found)}"


def _last_epoch(metrics: Path) -> int:
    """The highest `epoch` among the last rows of a metrics.jsonl (0 when none): its tail is enough."""
    try:
        with open(metrics, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 65536))
            lines = file.read().splitlines()
    except OSError:
        return 0
    epochs = [0]
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            epochs.append(row["epoch"])
    return max(epochs)
