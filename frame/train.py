"""The Hydra task function behind `frame train` and `frame run`."""

import contextlib
import gc
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger("frame")


def main(cfg: DictConfig) -> float | None:
    """Train the job in as many processes as it asks for; return the best monitored value (what sweepers optimise).

    `run_member` starts the processes (trainer.devices, torchrun, SLURM tasks), records the
    result for sweeps and hands a SLURM preemption to submitit for requeueing.
    """
    from frame.sweep import run_member

    return run_member(cfg, Path(HydraConfig.get().runtime.output_dir), train)


def train(cfg: DictConfig, run_dir: Path, world=None, stop=None) -> float | None:
    """One process's part: build the job, train it, return the best monitored value."""
    with long_lived_objects_out_of_gc() as built:
        from frame.build import build_job  # heavy imports (torch, MONAI) start here, not on the CLI
        from frame.loop import fit
        from frame.runinfo import RunRecord

        trainer = cfg.trainer
        with RunRecord(run_dir, enabled=None if world is None else world.is_main, name=cfg.name, epochs=trainer.epochs,
                       monitor=trainer.monitor, monitor_mode=trainer.monitor_mode.value) as record:
            job = build_job(cfg, run_dir, world)
            built()
            record.update(config_hash=job.config_hash)
            return fit(job, stop)


@contextlib.contextmanager
def long_lived_objects_out_of_gc():
    """Keep Python's cyclic garbage collector off the ~800k objects that importing torch and MONAI creates.

    Left alone, the collector walks that growing heap again and again while the imports run
    (~1 s of a 4 s start on a 2-core machine: scripts/bench/startup.py), and every later full
    collection walks it again (0.3 s each). So it is off until the job is built (call the
    yielded function then); what exists at that point is frozen out of its reach (`gc.freeze`)
    for the training, and unfrozen at the end, so that a process training several jobs one
    after another (a notebook, `Runner`) can still free the cycles an earlier job left behind.
    Where something else froze objects already, freezing is left to it.
    """
    enabled, ours = gc.isenabled(), gc.get_freeze_count() == 0
    frozen = False

    def built() -> None:
        nonlocal frozen
        if ours:
            gc.freeze()
            frozen = True
        if enabled:
            gc.enable()

    gc.disable()
    try:
        yield built
    finally:
        if frozen:
            gc.unfreeze()
        if enabled:
            gc.enable()
