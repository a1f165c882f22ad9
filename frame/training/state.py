"""What a checkpoint holds, and putting it back.

Everything is plain data (tensors, numbers, strings, lists, dicts) so that
`torch.load(weights_only=True)` reads it:

    format, frame_version        what wrote it (checkpoint.FORMAT)
    state                        TrainState: epoch, step, position in the epoch, best value
    counters                     the loop's running sums (logged loss window, bad-step counts)
    data                         what fixes the batch order: seed, length, batch size, world size
    model, optimizer, scheduler, scaler   their state_dicts (+ the optimizer's and scheduler's class)
    ema                          trainer.ema's averaged weights and update count (None without EMA)
    rng                          python, numpy, torch CPU and CUDA generator states
    config, config_hash          the resolved config as YAML, and its hash

Resume is exact because nothing else decides what happens next: the batch order
is a function of (data, epoch, position) (`EpochSampler`), every random
transform is seeded per item (`JobDataset`), and dropout draws from the restored
torch generator.
"""

import logging
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

from frame.core.errors import FrameError
from frame.core.version import __version__
from frame.tracking.jsonl import better
from frame.training.checkpoint import FORMAT

log = logging.getLogger("frame")


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken (skipped ones included)
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best: float | None = None  # best monitored value so far
    maximize: bool = False  # from trainer.monitor_mode; not taken from a checkpoint

    def update_best(self, value: float) -> bool:
        improved = better(value, self.best, self.maximize)
        if improved:
            self.best = value
        return improved


def capture(job, state: TrainState, counters: dict) -> dict:
    """The checkpoint dict; `counters` are loop objects with `state_dict()`/`load_state_dict()`."""
    return {
        "format": FORMAT,
        "frame_version": __version__,
        "state": asdict(state),
        "counters": {name: part.state_dict() for name, part in counters.items()},
        "data": data_order(job.train_sampler),
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "optimizer_class": _class_path(job.optimizer),
        "scheduler": job.scheduler.state_dict() if job.scheduler is not None else None,
        "scheduler_class": _class_path(job.scheduler),
        "scaler": job.scaler.state_dict(),
        "ema": job.ema.state_dict() if job.ema is not None else None,
        "rng": _rng_states(),
        "config": job.config_yaml,
        "config_hash": job.config_hash,
    }


def restore(job, state: TrainState, saved: dict, counters: dict) -> None:
    """Put a checkpoint back into the job and the loop state; `restore_rng` does the global RNGs.

    Optimizer and scheduler state are loaded only into one of the same class (a
    different class gets there only with force_resume=true and starts fresh).

    Raises:
        FrameError: the saved weights do not fit the model (only possible with force_resume=true).
    """
    for key, value in saved["state"].items():
        if key != "maximize":
            setattr(state, key, value)
    _follow_monitor(job, state, saved)
    try:
        job.model.load_state_dict(saved["model"])
    except RuntimeError as error:
        raise FrameError(
            f"the weights in {saved.get('_path', 'the checkpoint')} do not fit the configured model, "
            f"so it cannot be resumed even with force_resume=true: {error}"
        ) from error
    for name, part in (("optimizer", job.optimizer), ("scheduler", job.scheduler)):
        if part is None or saved[name] is None or saved[f"{name}_class"] != _class_path(part):
            if part is not None or saved[name] is not None:
                log.warning(
                    "%s changed from %s to %s: it starts fresh instead of from the checkpoint",
                    name,
                    saved[f"{name}_class"],
                    _class_path(part),
                )
            continue
        part.load_state_dict(saved[name])
    if job.ema is not None:  # a checkpoint written without trainer.ema: the average starts from the resumed weights
        if saved.get("ema") is None:
            log.warning("%s has no EMA of the weights: trainer.ema starts from the resumed ones", saved.get("_path"))
        job.ema.load_state_dict(saved.get("ema") or {"weights": saved["model"], "n_averaged": 0})
    if saved["scaler"]:  # empty when saved disabled (fp32, bf16): a now-enabled scaler (fp16) starts fresh
        job.scaler.load_state_dict(saved["scaler"])
    for name, part in counters.items():
        part.load_state_dict(saved["counters"][name])
    if data_order(job.train_sampler) != saved["data"]:
        log.warning(
            "the data order changed (%s -> %s): the resumed run does not replay the same batches",
            saved["data"],
            data_order(job.train_sampler),
        )


def _follow_monitor(job, state: TrainState, saved: dict) -> None:
    """A changed `trainer.monitor` or `monitor_mode` starts best tracking over: the saved best belongs to the
    old metric (or direction), so best.pt and the run's result would never follow the new one."""
    from omegaconf import OmegaConf

    before = OmegaConf.select(OmegaConf.create(saved["config"]), "trainer.monitor")
    now = job.cfg.trainer.monitor
    if before != now or saved["state"].get("maximize", state.maximize) != state.maximize:
        log.warning(
            "the monitor changed since the checkpoint (%s, %s -> %s, %s): best.pt and the result now "
            "follow the new one, from the next validation on",
            before,
            "max" if saved["state"].get("maximize") else "min",
            now,
            "max" if state.maximize else "min",
        )
        state.best = None


def restore_rng(saved: dict) -> None:
    """Put the saved python, numpy, torch and CUDA generator states back.

    Call it last, just before training: imports and loggers may draw from the
    global generators (rich draws a style id from `random` when imported).
    """
    _set_rng_states(saved["rng"])


def data_order(sampler) -> dict:
    """What fixes the training batches; with (epoch, batch_in_epoch) it replays them exactly."""
    return {
        "seed": sampler.seed,
        "length": sampler.length,
        "shuffle": sampler.shuffle,
        "batch_size": sampler.batch_size,
        "world_size": sampler.world_size,
    }


def _class_path(obj) -> str | None:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


def _rng_states() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
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
        cuda = states["cuda"][: torch.cuda.device_count()]
        for index, state in enumerate(cuda):
            torch.cuda.set_rng_state(state, index)
