"""The one writer of every file frame writes: run.json, metrics.jsonl cut back on resume, the lock,
sweep.json, checkpoints, eval JSON/CSV, predictions, exports, plots, converted jobs.

`write_file` fills a temp file in the target's folder, fsyncs it, renames it over the target and
fsyncs the folder: a reader, a crash or a full disk leaves the old file or the new one, never a
torn one. `Outputs` is what one command is about to write: two outputs on one path, an output on
the command's own input, or a name that leaves its folder are refused before anything is written.
Stays free of torch so that the sweep launchers and `frame convert` can use it.
"""

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from frame.core.errors import FrameError

TMP_PREFIX = ".tmp-"  # temp files of this writer (and of checkpoints); a crash leaves only these behind

Content = str | bytes | Callable[[Path], None]


class WriteError(FrameError):
    """A file could not be written (full disk, read-only folder, no permission); nothing was replaced."""

    def __init__(self, path: Path, reason: str):
        super().__init__(
            f"cannot write {path}: {reason}. Nothing was replaced (an earlier file there is intact); "
            "free some space or make the folder writable, then run the same command again."
        )
        self.path, self.reason = path, reason


def temp_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: same folder, same ending (writers
    that pick their format by the suffix, like matplotlib or NIfTI, still see it)."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def write_file(path, content: Content, also: Sequence[Path] = ()) -> Path:
    """Put `content` at `path` atomically and durably; returns `path`.

    `content` is text, bytes, or a function that writes the file at the temp path it is given
    (`torch.save`, `savefig`, safetensors, MONAI's SaveImage). Each of `also` gets the same bytes
    (a hard link, or a synced copy where links are refused), placed before `path`, so whoever
    finds `path` finds the others at least as new (checkpoints).

    Raises:
        WriteError: the OS refused the write (also when the function reports it wrapped, as
            torch.save does); every name keeps its previous file and no temp file is left.
    """
    path = Path(path)
    made = [temp_name(path)]
    try:
        if callable(content):
            content(made[0])
        else:
            with open(made[0], "wb") as file:
                file.write(content.encode() if isinstance(content, str) else content)
        _fsync(made[0])
        for other in map(Path, also):
            made.append(temp_name(other))
            _link_or_copy(made[0], made[-1])
            os.replace(made.pop(), other)
        os.replace(made[0], path)
        made.clear()
        _fsync(path.parent)
    except BaseException as error:
        for leftover in made:
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        if (reason := os_reason(error)) is not None:
            raise WriteError(path, reason) from error
        raise
    return path


def os_reason(error: BaseException) -> str | None:
    """The OS's words for a failed write, also where a library wrapped its OSError; None: no OS error."""
    cause, seen = error, set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError):
            return cause.strerror or str(cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def make_folder(path) -> Path:
    """Create the output folder `path` (and its parents).

    Raises:
        FrameError: it is a file, or cannot be made (read-only, no permission), named.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FrameError(f"{path} is not a folder (a file is there); give a folder for the output.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FrameError(f"cannot create the folder {path}: {error.strerror or error}.") from None
    return path


def confined(folder: Path, name: str, what: str) -> Path:
    """`folder / name` for a name that stays in `folder`: no separator, no `..`, not absolute, not empty.

    Raises:
        FrameError: naming `what` gave the name (e.g. `--name`).
    """
    name = str(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.sep in name:
        raise FrameError(f"{what} {name!r}: expected a plain file name (no '/', no '..'); it names a file in {folder}.")
    return Path(folder) / name


class Outputs:
    """The files one command is about to write, planned before the first is written.

    Raises (from `add`):
        FrameError: two outputs on one path (`a.nii` and `a.nii.gz` both -> `a_pred.nii.gz`), or an
            output on one of the command's inputs (`frame convert JOB -o JOB`).
    """

    def __init__(self, inputs: Iterable = ()):
        self.inputs = {_key(Path(p)): Path(p) for p in inputs}
        self.paths: dict[str, tuple[Path, str]] = {}

    def add(self, path, source: str = "") -> Path:
        path = Path(path)
        key = _key(path)
        if key in self.inputs:
            raise FrameError(
                f"{path} is an input of this command; writing it would replace what it reads. Give another output path."
            )
        if key in self.paths:
            first = self.paths[key][1]
            raise FrameError(
                f"{first} and {source} would both be written to {path}; nothing was written. "
                "Rename one of them, or give them in separate runs."
            )
        self.paths[key] = (path, source)
        return path


def _key(path: Path) -> str:
    """One key per file: the resolved path (symlinks followed), case folded nowhere (Linux)."""
    return os.path.realpath(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # EPERM, EXDEV, a filesystem without hard links
        shutil.copyfile(source, target)
        _fsync(target)
