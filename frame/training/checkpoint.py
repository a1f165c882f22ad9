"""Checkpoint files: atomic writes in the background, verified loads, fallback to the newest valid one.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(weights_only=True)` reads it and a planted pickle never runs.

Layout under `<run_dir>/checkpoints/`:
    last.pt            newest state: after every epoch (or every `checkpoint_every_n_minutes`), every
                       `checkpoint_every_n_steps`, on a stop signal
    best.pt            state at the best monitored value
    epoch-NNNN.pt      every `checkpoint_every_n_epochs`, the newest `keep_last` kept

`Checkpoints.save` copies the state to host memory and returns; one background
thread serialises it once into a temp file beside them (flush, fsync), links
best.pt and epoch-NNNN.pt to that file (a copy where the filesystem has no
hard links), renames it to last.pt and fsyncs the directory. The others are
renamed into place before last.pt, so whoever finds a last.pt knows the
others are at least as new. Each name changes with `os.replace`, so it always
holds a complete old or a complete new file; a crash mid-write leaves only a
temp file (starting with `.tmp-`), which the next `load_latest` removes. The
next save, and `wait()` (the loop calls it on every way out), wait for the
write in flight and raise its error: one state in memory at a time, and a
process never exits before its last checkpoint is whole.

A link shares its bytes with last.pt only until the next save renames a new
file over last.pt, so damage to one file reaches the names of one save at
most: the fallback still finds an older intact file.
"""

import logging
import pickle
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import torch

from frame.compat.torch import keep_state_metadata
from frame.core.atomic import TMP_PREFIX, WriteError, os_reason, write_file
from frame.core.errors import FrameError

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the content changes incompatibly; newer files are refused
_TYPES = {
    "format": int,
    "state": dict,
    "model": dict,
    "counters": dict,
    "config": (str, dict),
}  # read before anything else
_REQUIRED = (
    "format",
    "state",
    "counters",
    "data",
    "model",
    "optimizer",
    "optimizer_class",
    "scheduler",
    "scheduler_class",
    "scaler",
    "rng",
    "config",
)  # what frame.training.state.restore reads


class CheckpointError(FrameError):
    """No usable checkpoint, or one that could not be written."""


def atomic_write(path: Path, write: Callable[[BinaryIO], None], also: Sequence[Path] = ()) -> None:
    """Write a file once and put it at `path` and at each of `also`, each atomically, through frame's
    one writer (`frame.core.atomic.write_file`: temp file, fsync, links for `also`, rename, folder fsync).

    Raises:
        CheckpointError: the write failed (disk full, read-only directory, ...); every
            name keeps its previous file and no temp file is left behind.
    """

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            write(file)

    try:
        write_file(path, fill, also)
    except WriteError as error:
        raise CheckpointError(
            f"could not write checkpoint {path}: {error.reason}. The previous checkpoints in {path.parent} are intact; "
            f"free some space or fix the permissions, then run the same command again to continue."
        ) from error


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint after checking it is whole, with `weights_only=True`.

    Every record's CRC is checked first (torch.load does not, so a flipped byte in
    a tensor would load silently), then the file is unpickled with torch's
    weights-only unpickler, which refuses anything but plain data.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    try:
        if zipfile.is_zipfile(path):  # torch's format; a truncated file has no zip directory and fails below
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
            if broken is not None:
                raise CheckpointError(f"{path} is corrupted: record {broken} fails its CRC check")
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds objects that are not plain data (tensors, numbers, strings, lists, dicts); "
            f"refusing to load it, nothing in it was run. {str(error).splitlines()[0]}"
        ) from error
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path} is unreadable (truncated or corrupted): {reason}") from error
    missing = [key for key in _REQUIRED if key not in saved] if isinstance(saved, dict) else list(_REQUIRED)
    if missing:
        raise CheckpointError(f"{path} is not a frame checkpoint: it lacks {', '.join(missing)}")
    wrong = [key for key, kind in _TYPES.items() if not isinstance(saved[key], kind) or isinstance(saved[key], bool)]
    if wrong:
        raise CheckpointError(f"{path} is damaged: {', '.join(wrong)} of the wrong type; use another checkpoint")
    if saved["format"] > FORMAT:
        raise CheckpointError(
            f"{path} has format {saved['format']}, newer than this frame reads ({FORMAT}); "
            f"upgrade frame (it was written by frame {saved.get('frame_version')})"
        )
    return saved


def to_host(tree, _copies: dict | None = None):
    """A copy of a state's containers and tensors in host memory, which nothing else holds.

    Tensors that are the same view of the same memory (tied weights) are copied once, so the file
    keeps them shared. Device tensors are copied without blocking, then waited for together: one
    sync, not one per tensor.
    """
    copies = {} if _copies is None else _copies
    if isinstance(tree, torch.Tensor):
        key = (tree.device, tree.data_ptr(), tree.dtype, tuple(tree.shape), tree.stride())
        if key not in copies:
            copies[key] = tree.detach().to("cpu", copy=True, non_blocking=tree.is_cuda)
        copy = copies[key]
    elif isinstance(tree, dict):
        copy = type(tree)((key, to_host(value, copies)) for key, value in tree.items())
        keep_state_metadata(tree, copy)  # a module state_dict's versions, which load_state_dict reads
    elif isinstance(tree, (list, tuple)):
        copy = type(tree)(to_host(value, copies) for value in tree)
    else:
        copy = tree
    if _copies is None and any(device.type == "cuda" for device, *_ in copies):
        torch.cuda.synchronize()
    return copy


class Checkpoints:
    """The checkpoints of one run directory.

    Args:
        run_dir: the run directory; files go to `<run_dir>/checkpoints/`.
        every_n_epochs: also keep `epoch-NNNN.pt` every this many epochs (0 = never).
        keep_last: how many `epoch-NNNN.pt` to keep.
        every_n_minutes: write last.pt on this interval rather than after every epoch (0 = after every epoch);
            the loop asks `due` at each step's end and each epoch's.
    """

    def __init__(self, run_dir: Path, every_n_epochs: int = 1, keep_last: int = 2, every_n_minutes: float = 0):
        self.dir = Path(run_dir) / "checkpoints"
        self.every_n_epochs, self.keep_last = every_n_epochs, keep_last
        self.every_n_minutes = every_n_minutes
        self._saved_at = time.monotonic()  # training starts from a checkpoint or from nothing: the interval's start
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict, *, best: bool = False, epoch_end: bool = False) -> None:
        """Start writing last.pt, and best.pt / epoch-NNNN.pt when due, from one serialisation.

        Returns once `state` is copied to host memory (training may change the originals at once);
        the file is written by a background thread after the previous write has finished.

        Raises:
            CheckpointError: the previous write failed; the files before it are intact.
        """
        self.wait()
        self._saved_at = time.monotonic()
        host = to_host(state)
        epoch = host["state"]["epoch"]  # pyright: ignore[reportCallIssue]
        periodic = bool(epoch_end and self.every_n_epochs and epoch % self.every_n_epochs == 0)
        also = [self.dir / f"epoch-{epoch:04d}.pt"] if periodic else []
        also += [self.dir / "best.pt"] if best else []
        self._writer = threading.Thread(target=self._write, args=(host, also, periodic), name="frame-checkpoint")
        self._writer.start()

    def due(self, epoch_end: int | None = None) -> bool:
        """Whether the time interval has passed since the last write; at the end of epoch `epoch_end`
        (counted from 1) also whether that epoch's checkpoint is wanted anyway: no interval is set (a
        checkpoint after every epoch) or its epoch-NNNN.pt is due."""
        if epoch_end is not None and (
            not self.every_n_minutes or (self.every_n_epochs and epoch_end % self.every_n_epochs == 0)
        ):
            return True
        return bool(self.every_n_minutes) and time.monotonic() - self._saved_at >= self.every_n_minutes * 60

    def wait(self) -> None:
        """Block until the write in flight (if any) is on disk.

        Raises:
            CheckpointError: that write failed (raised once); the files before it are intact.
        """
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _write(self, state: dict, also: list[Path], periodic: bool) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.dir / "last.pt", lambda file: torch.save(state, file), also)
            if periodic:
                self._prune()
        except OSError as error:  # mkdir or prune
            self._error = CheckpointError(f"could not write checkpoints in {self.dir}: {os_reason(error)}")
        except BaseException as error:  # CheckpointError, or a bug: raised in the training thread, never lost
            self._error = error

    def load_latest(self) -> dict | None:
        """The newest checkpoint that loads, falling back past broken ones with a warning.

        Returns None when there is none at all (a new run); the dict gets `_path`.

        Raises:
            CheckpointError: there are checkpoints and none is valid, so a run
                never silently starts over.
        """
        self.wait()
        self._clean_temp_files()
        failures = []
        for path in self._candidates():
            try:
                saved = load_checkpoint(path)
            except CheckpointError as error:
                failures.append(str(error))
                log.warning("skipping checkpoint: %s", error)
                continue
            if failures:
                log.warning("resuming from the older %s (step %d) instead", path.name, saved["state"]["step"])
            saved["_path"] = str(path)
            return saved
        if failures:
            raise CheckpointError(
                "no valid checkpoint to resume from:\n  "
                + "\n  ".join(failures)
                + "\nMove the run directory aside, or pass fresh=true to start over (it moves the old run aside)."
            )
        return None

    def _epoch_files(self) -> list[Path]:
        """epoch-NNNN.pt, oldest first (by number: epoch-10000 comes after epoch-9999)."""

        def number(path):
            digits = path.stem.removeprefix("epoch-")
            return int(digits) if digits.isdigit() else -1

        return sorted(self.dir.glob("epoch-*.pt"), key=number)

    def _candidates(self) -> list[Path]:
        """last.pt, then epoch checkpoints newest first, then best.pt."""
        if not self.dir.is_dir():
            return []
        paths = [self.dir / "last.pt", *reversed(self._epoch_files()), self.dir / "best.pt"]
        return [path for path in paths if path.is_file()]

    def _prune(self) -> None:
        for old in self._epoch_files()[: -self.keep_last]:
            old.unlink()

    def _clean_temp_files(self) -> None:
        if self.dir.is_dir():
            for tmp in self.dir.glob(f"{TMP_PREFIX}*"):
                log.info("removing %s left by an interrupted write", tmp.name)
                tmp.unlink(missing_ok=True)
