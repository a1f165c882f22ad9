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

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    return fit(build_job(cfg, run_dir))
