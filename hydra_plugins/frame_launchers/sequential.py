"""`hydra/launcher=sequential`: one member after another in this process (frame's default launcher)."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from frame.launch import sweep

log = logging.getLogger("frame")


@dataclass
class FrameSequentialConf:
    _target_: str = "hydra_plugins.frame_launchers.sequential.FrameSequentialLauncher"


class FrameSequentialLauncher(Launcher):
    """One member after another in this process (Hydra's basic launcher plus frame's bookkeeping)."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        members = sweep.plan(self, job_overrides, initial_job_idx)
        sweep.write_summary(sweep_dir, members)
        returns = []
        try:
            for member in members:
                if member.skipped:
                    returns.append(sweep.skipped_return(member))
                    continue
                log.info("member %d: %s", member.num, " ".join(filter_overrides(member.overrides)))
                config = self.hydra_context.config_loader.load_sweep_config(self.config, member.overrides)
                with open_dict(config.hydra.job):
                    config.hydra.job.id = member.num
                    config.hydra.job.num = member.num
                member.status = "running"
                try:
                    ret = run_job(
                        hydra_context=self.hydra_context,
                        task_function=self.task_function,
                        config=config,
                        job_dir_key="hydra.sweep.dir",
                        job_subdir_key="hydra.sweep.subdir",
                    )
                except BaseException:  # a stop signal (exit 75): the sweep stops here, the same command continues it
                    member.status = None  # the summary takes the outcome from the member's run.json
                    raise
                finally:
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)  # off the member's log
                member.returned(ret)
                returns.append(ret)
                sweep.write_summary(sweep_dir, members)
        finally:
            sweep.log_summary(sweep_dir, members)
        return returns


ConfigStore.instance().store(
    group="hydra/launcher", name="frame_sequential", node=FrameSequentialConf, provider="frame"
)
