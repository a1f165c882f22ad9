"""The Hydra task function behind `frame train` and `frame run`."""

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
    froze = import_job_modules(cfg)  # heavy imports (torch, MONAI) start here, not on the CLI
    try:
        from frame.build import build_job
        from frame.loop import fit
        from frame.runinfo import RunRecord

        trainer = cfg.trainer
        with RunRecord(run_dir, enabled=None if world is None else world.is_main, name=cfg.name, epochs=trainer.epochs,
                       monitor=trainer.monitor, monitor_mode=trainer.monitor_mode.value) as record:
            job = build_job(cfg, run_dir, world)
            record.update(config_hash=job.config_hash)
            return fit(job, stop)
    finally:
        if froze:
            gc.unfreeze()  # a process that trains another job next (a notebook, Runner) can free this one's cycles


def import_job_modules(cfg: DictConfig) -> bool:
    """Import frame's training modules and every component's module with the garbage collector off,
    then freeze what exists out of its reach (`gc.freeze`). Returns whether it froze.

    Importing torch and MONAI creates ~800k objects that live as long as the process. Left on,
    the collector walks that growing heap again and again while they import (~1 s of a 4 s start
    on a 2-core machine: scripts/bench/startup.py), and every later full collection walks it
    again (0.3 s each). Only imports run with it off: what building the job allocates (a preload
    cache, say) is collected as usual. Where something else froze objects already, freezing is
    left to it.
    """
    enabled, ours = gc.isenabled(), gc.get_freeze_count() == 0
    gc.disable()
    try:
        from frame.build import import_components

        import_components(cfg)
    finally:
        if ours:
            gc.freeze()
        if enabled:
            gc.enable()
    return ours
