"""A Hydra callback that checks a job before Hydra creates its run directory.

Hydra calls `on_run_start` / `on_multirun_start` after composing the config
and before `run_job` makes the output directory and writes `.hydra/`, so a
rejected job leaves nothing behind and an earlier run is never overwritten.

Hydra turns any exception a callback raises into a warning and runs the job
anyway, which would skip the run-directory policy (a `resume=false` run
overwriting a finished one). So nothing escapes here: a user mistake exits 2
with its message, and so does any other failure, with what it was. The
`${hydra:...}` resolver reads Hydra's config, which Hydra sets only when the job
starts; it is set here first so such values resolve as they will in the job.
A single run's directory is printed here, saying whether the command continues a run or
starts one (`frame.config.rundir.run_suffix` names it). A single run's lock is taken here
(`frame.core.run_lock.claim_early`): a second process must be refused before Hydra rewrites the live run's `.hydra/`.
Only rank 0 claims the run directory: under torchrun every rank runs this
check, and the others would find rank 0's lock (refused) or move its run
aside (fresh=true).
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from frame.config.check import check_config
from frame.config.compose import name_members_by_search, name_sweep_by_its_overrides
from frame.config.rundir import claim, holds_run
from frame.config.validate import check_device, validate
from frame.core.errors import FrameError, exit_with
from frame.core.ranks import global_rank
from frame.core.run_lock import claim_early


class Preflight(Callback):
    """Applies validation, `frame check` and the run-directory policy; a rejected job exits here (code 2)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        name_sweep_by_its_overrides(config)
        _check(config, "hydra.sweep.dir")
        name_members_by_search(config)


def _check(config: DictConfig, dir_key: str) -> None:
    """Raise nothing: exit 2 on any failure, return only when the job may run."""
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    try:
        hydra_config.set_config(config)
        validate(config)  # before the directory: it interpolates `name`, which may not resolve
        directory = Path(str(OmegaConf.select(config, dir_key)))
        if dir_key == "hydra.run.dir" or not _submits(config):
            check_device(config)  # where the job runs: not on a SLURM submission host
        check_config(config)  # names, constructor params, data root, labels (frame check)
        if global_rank() != 0:  # torchrun's other ranks join rank 0's run: its lock and its policy, not theirs
            return
        claim(directory, resume=config.resume, fresh=config.fresh, sweep=dir_key == "hydra.sweep.dir")
        if dir_key == "hydra.run.dir":
            claim_early(directory)  # before Hydra writes .hydra/ into it
            print(
                f"frame: {'continuing the run in' if holds_run(directory) else 'a new run in'} {directory}", flush=True
            )
    except FrameError as error:
        exit_with(str(error))
    except Exception as error:  # never a warning: the job must not run past an unapplied policy
        exit_with(f"cannot check the job before it runs: {type(error).__name__}: {error}")
    finally:
        hydra_config.cfg = saved
        OmegaConf.set_readonly(config.hydra, None)  # set_config froze it; Hydra sets runtime values later


def _submits(config: DictConfig) -> bool:
    """Whether the launcher sends the jobs to other machines (SLURM) instead of running them here."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "").lower()
    return "slurm" in target or "submitit" in target
