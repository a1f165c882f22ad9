"""The Hydra task function behind `frame train` and `frame run`."""

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
    from frame.build import build_job  # heavy imports (torch, MONAI) start here, not on the CLI
    from frame.loop import fit
    from frame.runinfo import RunRecord

    trainer = cfg.trainer
    with RunRecord(run_dir, enabled=None if world is None else world.is_main, name=cfg.name, epochs=trainer.epochs,
                   monitor=trainer.monitor, monitor_mode=trainer.monitor_mode.value) as record:
        job = build_job(cfg, run_dir, world)
        record.update(config_hash=job.config_hash)
        return fit(job, stop)
