"""Reading back what frame wrote: never blocking, damage named, nothing lost.

A reader opens without blocking and refuses what is not a regular file (a FIFO would hang `frame
runs`, a directory would raise IsADirectoryError). A small JSON state file (run.json, sweep.json)
that is damaged (garbage bytes, invalid UTF-8, truncated, absurdly nested, not an object) is either
named in a clear error, or, where frame is about to rewrite it, kept beside as
`<name>.damaged-<time>` with one warning, so that its W&B id and attempts are not lost silently.
Also the one rule of what makes a folder a run (`holds_run`), for the corridor and `frame runs`.
"""

import json
import logging
import os
import stat
import time
from pathlib import Path

from frame.core.errors import FrameError

log = logging.getLogger("frame")

RUN_FILES = ("run.json", "metrics.jsonl", "checkpoints")  # a folder holding any of these holds a run
MAX_STATE_BYTES = 64 << 20  # a state file larger than this is not one frame wrote


class DamagedFile(FrameError):
    """A file frame reads back is not what frame wrote there; the message names it and what to do."""


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a run (what a new run must not take back, what `frame runs` lists)."""
    return any(os.path.lexists(Path(folder) / name) for name in RUN_FILES)


def read_bytes(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of the regular file `path`; None when there is none. Never blocks on a FIFO.

    Raises:
        DamagedFile: a FIFO, a directory or another non-regular file is there, or it is larger than `limit`.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DamagedFile(f"{path} is a directory where frame keeps a file; move it away.") from None
    except OSError as error:
        raise DamagedFile(f"cannot read {path}: {error.strerror}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(info.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(info.st_mode)
                else "not a regular file"
            )
            raise DamagedFile(f"{path} is {kind} where frame keeps a file; move it away.")
        if limit is not None and info.st_size > limit:
            raise DamagedFile(f"{path} is {info.st_size} bytes, not a file frame wrote; move it away.")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_object(path: Path) -> dict | None:
    """The JSON object in `path`; None when there is no file.

    Raises:
        DamagedFile: not a regular file, not UTF-8, not JSON, nested too deep, or not an object.
    """
    data = read_bytes(path, MAX_STATE_BYTES)
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DamagedFile(f"{path} is damaged: invalid UTF-8 at byte {error.start}.") from None
    except ValueError as error:
        raise DamagedFile(f"{path} is damaged: {error}.") from None
    except RecursionError:
        raise DamagedFile(f"{path} is damaged: nested too deep.") from None
    if not isinstance(value, dict):
        raise DamagedFile(f"{path} is damaged: a JSON {type(value).__name__}, not an object.")
    return value


def read_or_keep_aside(path: Path) -> dict:
    """The JSON object in `path` for a writer about to rewrite it: {} when there is none; a damaged
    regular file is renamed to `<name>.damaged-<time>` (nothing lost) with one warning.

    Raises:
        DamagedFile: a FIFO or a directory is there (not moved: frame did not make it).
    """
    try:
        return read_object(path) or {}
    except DamagedFile as error:
        if not Path(path).is_file():
            raise
        aside = keep_aside(Path(path))
        log.warning("%s; kept it as %s and started a new one", str(error).rstrip("."), aside.name)
        return {}


def keep_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged-<time>` beside it; returns the new path."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    while aside.exists():
        aside = aside.with_name(aside.name + "x")
    os.rename(path, aside)
    return aside
