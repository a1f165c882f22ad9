"""One member's Hydra job run in this process: what every frame launcher does where the member runs
(the sequential launcher's own process, a local member process, a SLURM task)."""

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from omegaconf import DictConfig, open_dict, read_write

from frame.compat.hydra import job_outcome
from frame.core.ranks import global_rank
from frame.launch.sweep import MemberFailed


def run_here(launcher, overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
    """Run one member in this process: what hydra-submitit-launcher's `__call__` does, plus
    no Hydra side effects (.hydra/, the train.log handler) on ranks other than 0."""
    Singleton.set_state(singleton_state)
    setup_globals()
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config.hydra.job):
        config.hydra.job.id = job_id
        config.hydra.job.num = job_num
    if global_rank() != 0:
        _without_side_effects(config)
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=config,
        job_dir_key=job_dir_key,
        job_subdir_key="hydra.sweep.subdir",
    )


def _without_side_effects(config: DictConfig) -> None:
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.output_subdir = None
        handlers = config.hydra.job_logging.get("handlers") or {}
        if "file" in handlers:
            del handlers["file"]
            root = config.hydra.job_logging.get("root") or {}
            root["handlers"] = [h for h in root.get("handlers", []) if h != "file"]


def raise_if_failed(ret: JobReturn, job_num: int) -> JobReturn:
    if ret.status == JobStatus.FAILED:
        error = job_outcome(ret)
        raise MemberFailed(
            f"member {job_num} failed: {type(error).__name__}: {error} (traceback in its run directory's error.txt)"
        ) from error
    return ret
