"""Checkpoint files: atomic writes, verified loads, fallback to the newest valid one.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(weights_only=True)` reads it and a planted pickle never runs.

Layout under `<run_dir>/checkpoints/`:
    last.pt            newest state, written after every epoch and on a stop signal
    best.pt            state at the best monitored value
    epoch-NNNN.pt      every `checkpoint_every_n_epochs`, the newest `keep_last` kept
"""

import io
import logging
import os
import pickle
from pathlib import Path

import torch

from frame.errors import FrameError

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"


class CheckpointError(FrameError):
    """No usable checkpoint, or one that could not be written."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` so that `path` holds either its old or its new content, never a torn one."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {error.strerror or error}") from error
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: Path) -> dict:
    """Load with `weights_only=True`; raise CheckpointError naming what is wrong."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds objects that are not plain data (tensors, numbers, strings, lists, dicts); "
            f"refusing to load it. {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable (truncated or corrupted): {error}") from error


class Checkpoints:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: Path, every_n_epochs: int = 1, keep_last: int = 2):
        self.dir = Path(run_dir) / "checkpoints"
        self.every_n_epochs, self.keep_last = every_n_epochs, keep_last

    def exist(self) -> bool:
        return any(self._candidates())

    def save(self, state: dict, *, best: bool = False, epoch_end: bool = False) -> None:
        """Write last.pt (and best.pt, epoch-NNNN.pt when due) from one serialisation."""
        self.dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        epoch = state["state"]["epoch"]
        if epoch_end and self.every_n_epochs and epoch % self.every_n_epochs == 0:
            atomic_write(self.dir / f"epoch-{epoch:04d}.pt", data)
            self._prune()
        if best:
            atomic_write(self.dir / "best.pt", data)
        atomic_write(self.dir / "last.pt", data)

    def load_latest(self) -> dict | None:
        """The newest checkpoint that loads, falling back past broken ones.

        Returns None when there is none at all; raises CheckpointError when
        there are some and none is valid, so a run never silently starts over.
        """
        self._clean_temp_files()
        failures = []
        for path in self._candidates():
            try:
                state = load_checkpoint(path)
            except CheckpointError as error:
                failures.append(str(error))
                log.warning("skipping checkpoint: %s", error)
                continue
            if failures:
                log.warning("resuming from %s instead", path.name)
            state["_path"] = str(path)
            return state
        if failures:
            raise CheckpointError(
                "no valid checkpoint to resume from:\n  " + "\n  ".join(failures)
                + "\nMove the run directory aside, or pass fresh=true to start over."
            )
        return None

    def _candidates(self) -> list[Path]:
        """last.pt, then epoch checkpoints newest first, then best.pt."""
        if not self.dir.is_dir():
            return []
        epochs = sorted(self.dir.glob("epoch-*.pt"), reverse=True)
        return [p for p in [self.dir / "last.pt", *epochs, self.dir / "best.pt"] if p.is_file()]

    def _prune(self) -> None:
        for old in sorted(self.dir.glob("epoch-*.pt"))[: -self.keep_last or None]:
            old.unlink()

    def _clean_temp_files(self) -> None:
        if self.dir.is_dir():
            for tmp in self.dir.glob(f"{_TMP_PREFIX}*"):
                log.info("removing %s left by an interrupted write", tmp.name)
                tmp.unlink(missing_ok=True)
