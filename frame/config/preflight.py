"""A Hydra callback that checks a job before Hydra creates its run directory.

Hydra calls `on_run_start` / `on_multirun_start` after composing the config
and before `run_job` makes the output directory and writes `.hydra/`, so a
rejected job leaves nothing behind and an earlier run is never overwritten.
"""

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from frame.config.check import check_config
from frame.config.rundir import claim
from frame.config.validate import validate
from frame.errors import FrameError, exit_with


class Preflight(Callback):
    """Hydra turns exceptions from callbacks into warnings, so a rejected job exits here (code 2)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _check(config, Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _check(config, Path(config.hydra.sweep.dir))


def _check(config: DictConfig, directory: Path) -> None:
    try:
        validate(config)
        check_config(config)  # names, constructor params, data root, labels (frame check)
        claim(directory, resume=config.resume, fresh=config.fresh)
    except FrameError as error:
        exit_with(str(error))
