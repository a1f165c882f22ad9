"""A member of an Optuna sweep (`hydra/sweeper=frame_optuna`) and its trial: the monitored value goes
to the study every epoch, and the study's pruner answers whether to stop.

The member's Hydra config names its study (`hydra.sweeper.storage`, `study_name`, `pruner`) and its
trial (`hydra.job.num` is the trial's number), so this works wherever the member runs: in the
sweeper's process, a local member process, or a SLURM job on another node sharing the study's file.
Rank 0 talks to the study; under DDP every rank gets its answer, so all stop at the same epoch.
A pruned run records `pruned` in run.json (its status once it exits) and tells its trial PRUNED.
"""

import logging

from frame.core import run_record

log = logging.getLogger("frame")
SWEEPER = "hydra_plugins.frame_launchers.optuna_sweeper.FrameOptunaSweeper"


def sweep_trial(job) -> "SweepTrial | None":
    """The trial this run is a member of; None outside a frame_optuna sweep (on every rank alike)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.sweeper
    if sweeper.get("_target_") != SWEEPER or not sweeper.get("storage") or hydra.job.get("num") is None:
        return None
    return SweepTrial(sweeper, int(hydra.job.num), job.run_dir, str(job.cfg.trainer.monitor))


class SweepTrial:
    """Reports one member's monitor to its trial and asks the pruner: `pruned`, once an epoch."""

    def __init__(self, sweeper, number: int, run_dir, monitor: str) -> None:
        import torch.distributed as dist

        self.number, self.run_dir, self.monitor = number, run_dir, monitor
        self.shared = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.trial = None
        if not self.shared or dist.get_rank() == 0:
            import optuna

            from frame.compat.optuna import member_trial
            from frame.config.optuna_study import build_pruner, open_storage

            storage = open_storage(str(sweeper.storage))
            self.study = optuna.load_study(
                study_name=str(sweeper.study_name),
                storage=storage,
                sampler=optuna.samplers.RandomSampler(),
                pruner=build_pruner(sweeper.pruner),
            )
            self.trial = member_trial(self.study, storage, number)

    def pruned(self, epoch: int, value: float) -> bool:
        """Report `value` of `epoch` (1-based) to the trial; True when its pruner stops it here. The
        caller has written this epoch's checkpoint; run.json and the trial learn the verdict here."""
        verdict = False
        if self.trial is not None:
            from optuna.trial import TrialState

            self.trial.report(float(value), step=epoch)
            verdict = self.trial.should_prune()
            if verdict:
                run_record.update(self.run_dir, pruned={"trial": self.number, "epoch": epoch, "value": value})
                self.study.tell(self.number, state=TrialState.PRUNED, skip_if_finished=True)
                log.warning(
                    "pruned by %s at epoch %d (%s=%.4g): Optuna trial %d stops here, checkpoint written",
                    type(self.study.pruner).__name__,
                    epoch,
                    self.monitor,
                    value,
                    self.number,
                )
        if self.shared:
            import torch.distributed as dist

            answer = [verdict]
            dist.broadcast_object_list(answer, src=0)
            verdict = answer[0]
        return verdict
