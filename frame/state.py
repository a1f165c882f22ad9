"""What a checkpoint holds, and putting it back.

Everything is plain data (tensors, numbers, strings, lists, dicts) so that
`torch.load(weights_only=True)` reads it. RNG states are stored so that a
resumed run draws the same dropout masks as an uninterrupted one; the data
order needs no state because `EpochSampler` derives it from (seed, epoch).
"""

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

import frame


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken (skipped ones included)
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best: float | None = None  # best monitored value so far
    maximize: bool = False

    def update_best(self, value: float) -> bool:
        better = self.best is None or (value > self.best if self.maximize else value < self.best)
        if better:
            self.best = value
        return better


def capture(job, state: TrainState) -> dict:
    return {
        "format": 1,
        "frame_version": frame.__version__,
        "state": asdict(state),
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict() if job.scheduler is not None else None,
        "scaler": job.scaler.state_dict(),
        "rng": _rng_states(),
        "config": job.config_yaml,
        "config_hash": job.config_hash,
    }


def restore(job, state: TrainState, saved: dict) -> None:
    for key, value in saved["state"].items():
        setattr(state, key, value)
    job.model.load_state_dict(saved["model"])
    job.optimizer.load_state_dict(saved["optimizer"])
    if job.scheduler is not None and saved["scheduler"] is not None:
        job.scheduler.load_state_dict(saved["scheduler"])
    job.scaler.load_state_dict(saved["scaler"])
    _set_rng_states(saved["rng"])


def _rng_states() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
