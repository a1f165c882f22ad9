"""The Hydra task function behind `frame train` and `frame run`."""

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger("frame")


def main(cfg: DictConfig) -> float | None:
    """Build the job, train it, return the best monitored value (what sweepers optimise)."""
    from frame.build import build_job  # heavy imports (torch, MONAI) start here, not on the CLI
    from frame.loop import fit
    from frame.runinfo import RunRecord

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    trainer = cfg.trainer
    with RunRecord(run_dir, name=cfg.name, epochs=trainer.epochs, monitor=trainer.monitor,
                   monitor_mode=trainer.monitor_mode.value) as record:
        job = build_job(cfg, run_dir)
        record.update(config_hash=job.config_hash)
        return fit(job)
