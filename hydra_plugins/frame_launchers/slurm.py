"""`hydra/launcher=slurm`: SLURM job arrays through submitit (hydra-submitit-launcher's
SlurmLauncher, with frame's submitting, waiting and sweep bookkeeping)."""

import itertools
import logging
import pickle
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from frame.compat.submitit import attach, read_result, result_paths, stderr_path
from frame.core.exits import EXIT_INTERRUPTED
from frame.launch import sweep
from frame.launch.corridor import ERROR_FILE
from hydra_plugins.frame_launchers.run_member import raise_if_failed, run_here
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

log = logging.getLogger("frame")

LOST_AFTER_S = 30.0  # a job ended this long without a result file ended without one
POLL_MAX_S = 5.0  # a cancelled array is noticed within this (and one squeue call)
# squeue's states of jobs that ended (it shows them for MinJobAge, 300 s by default, with -t all)
ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}


@dataclass
class FrameSlurmConf(SlurmQueueConf):
    """hydra-submitit-launcher's `submitit_slurm` keys, with frame's defaults."""

    _target_: str = "hydra_plugins.frame_launchers.slurm.FrameSlurmLauncher"
    timeout_min: int = 240
    cpus_per_task: Optional[int] = 4  # per rank: DataLoader workers + 1
    mem_gb: Optional[int] = 16  # per node
    array_parallelism: int = 32
    signal_delay_s: int = 300  # SIGUSR2 this long before the time limit: time for a step and a checkpoint
    max_num_timeout: int = 20  # requeues after a time limit (forced to 0 when resume=false)
    max_array_size: Optional[int] = None  # members per job array; None: the cluster's MaxArraySize


class FrameSlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with frame's sweep bookkeeping.

    One job array for the members that are not complete yet (several, one after another, when
    they are more than the cluster's MaxArraySize). Waiting polls `squeue` and the result
    files, not `sacct`, so it works without SLURM accounting; a member cancelled before it
    started is reported as cancelled at the next poll, and a job that ends without a result
    (killed, node lost) is reported instead of waited on forever. `max_num_timeout` is forced
    to 0 with resume=false: a requeued job would start over and overwrite its own run.
    """

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        import submitit

        ret = run_here(self, sweep_overrides, job_dir_key, job_num, submitit.JobEnvironment().job_id, singleton_state)
        return raise_if_failed(ret, job_num)  # a failed member's SLURM job exits non-zero

    def executor(self):
        """The submitit executor for this launcher's parameters (what `launch` submits with)."""
        import submitit

        params = dict(self.params)
        if params["signal_delay_s"] >= params["timeout_min"] * 60:
            from frame.core.errors import FrameError

            raise FrameError(
                f"hydra.launcher.signal_delay_s={params['signal_delay_s']} is not shorter than "
                f"hydra.launcher.timeout_min={params['timeout_min']} minutes: SLURM would signal every "
                f"member as timed out when it starts. Lower signal_delay_s or raise timeout_min."
            )
        folder = params.pop("submitit_folder")
        params.pop("max_array_size", None)
        max_num_timeout = params.pop("max_num_timeout")
        if max_num_timeout and not self.config.get("resume", True):
            log.info("resume=false: a timed-out member is not requeued (max_num_timeout=0)")
            max_num_timeout = 0
        executor = submitit.AutoExecutor(cluster="slurm", folder=folder, slurm_max_num_timeout=max_num_timeout)
        generic = set(OmegaConf.structured(submitit_launcher.BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        start = time.perf_counter()
        members = sweep.plan(self, job_overrides, initial_job_idx)
        planned = time.perf_counter()
        todo = [m for m in members if not m.skipped]
        returns = {m.num: sweep.skipped_return(m) for m in members if m.skipped}
        try:
            attached = self._attach(todo, sweep_dir)  # still queued or running from an earlier invocation
            submit = [m for m in todo if m.num not in attached]
            jobs = dict(attached)
            if submit:
                arrays, submitted = self._submit(submit)
                log.info(
                    "submitted %d members as SLURM job %s %s in %.2f s (%.2f s planning the members "
                    "and their run directories); folder %s",
                    len(submit),
                    "array" if len(arrays) == 1 else "arrays",
                    " ".join(arrays),
                    time.perf_counter() - start,
                    planned - start,
                    self.params["submitit_folder"],
                )
                jobs.update(submitted)
            if todo:
                sweep.write_summary(sweep_dir, members)
                returns.update(self._wait(todo, [jobs[m.num] for m in todo], sweep_dir, members))
        except KeyboardInterrupt:  # Ctrl-C: stop waiting, not the jobs
            log.warning(
                "stopped waiting; the submitted jobs keep running. Run the same command again to "
                "collect them (complete members are not run again)."
            )
            raise SystemExit(EXIT_INTERRUPTED) from None
        finally:
            sweep.log_summary(sweep_dir, members)
        if any(m.status in ("interrupted", "cancelled") for m in todo):  # the same command continues the sweep
            raise SystemExit(EXIT_INTERRUPTED)
        return [returns[m.num] for m in members]

    def _submit(self, members) -> tuple[list[str], dict]:
        """Submit `members` as job arrays of at most `max_array_size` members (SLURM refuses a larger
        one), each array waiting for the one before to end, so that `array_parallelism` stays the
        sweep's limit; return the arrays' ids and {member.num: job}."""
        executor = self.executor()
        call = MemberCall.write(self, executor.folder)
        size = max(1, self.params.get("max_array_size") or max_array_size())
        arrays, jobs = [], {}
        for first in range(0, len(members), size):
            chunk = members[first : first + size]
            if arrays:
                executor.update_parameters(slurm_dependency=f"afterany:{arrays[-1]}")
            submitted = executor.map_array(call, [m.overrides for m in chunk], [m.num for m in chunk])
            arrays.append(submitted[0].job_id.split("_")[0])
            for member, job in zip(chunk, submitted):
                member.job_id, member.status, jobs[member.num] = job.job_id, "pending", job
        return arrays, jobs

    def _attach(self, todo, sweep_dir) -> dict:
        """Jobs an earlier invocation submitted for these members that SLURM still runs or queues:
        waiting for them (submitit's paths follow from the folder and the job id) instead of
        training the same run directory twice."""
        earlier = sweep.earlier_job_ids(sweep_dir, todo)
        states = squeue_states(sorted({job_id.split("_")[0] for job_id in earlier.values()})) if earlier else {}
        tasks = list(range(self.params["nodes"] * self.params["tasks_per_node"]))
        attached = {}
        for member in todo:
            job_id = earlier.get(member.num)
            if states and job_id in states and states[job_id] not in ENDED:
                member.job_id, member.status = job_id, "pending"
                attached[member.num] = attach(self.params["submitit_folder"], job_id, tasks)
        if attached:
            log.info(
                "%d members are still queued or running from an earlier run of this sweep (%s): waiting for "
                "them instead of submitting them again",
                len(attached),
                " ".join(m.job_id for m in todo if m.num in attached),
            )
        return attached

    def _wait(self, todo, jobs, sweep_dir, members) -> dict[int, JobReturn]:
        waiting = {job.job_id: (member, job) for member, job in zip(todo, jobs)}
        returns, gone_since, start = {}, {}, time.monotonic()
        while waiting:
            states = squeue_states(sorted({job_id.split("_")[0] for job_id in waiting}))
            changed = False
            for job_id, (member, job) in list(waiting.items()):
                state = (states or {}).get(job_id)
                if _results_written(job):
                    returns[member.num] = _slurm_return(member, job)
                elif states is None or (state and state not in ENDED):
                    gone_since.pop(job_id, None)
                    status = "running" if state in ("RUNNING", "COMPLETING") else "pending"
                    changed |= status != member.status
                    member.status = status
                    continue
                elif result_paths(job)[0].exists():  # ended; a rank other than 0 left no result
                    returns[member.num] = _slurm_return(member, job)
                elif state == "CANCELLED" and sweep.last_job_id(member.record) != job_id:  # before it started
                    returns[member.num] = _cancelled_return(member)
                elif time.monotonic() - gone_since.setdefault(job_id, time.monotonic()) < LOST_AFTER_S:
                    continue
                else:
                    returns[member.num] = _lost_return(member, job)
                del waiting[job_id]
                changed = True
            if changed:
                sweep.write_summary(sweep_dir, members)
            if waiting:
                time.sleep(min(POLL_MAX_S, 0.5 + (time.monotonic() - start) / 20))
        return returns


class MemberCall:
    """What submitit pickles for each member: its overrides and number, and the path of one pickle of
    the launcher and Hydra's state written once per launch. Pickled per member, those (the sweep's
    config, Hydra's config store) took most of the time to submit a 1000-member array."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def write(cls, launcher: FrameSlurmLauncher, folder) -> "MemberCall":
        import cloudpickle

        shared = Path(*itertools.takewhile(lambda part: "%" not in part, Path(folder).parts))  # before %j
        shared.mkdir(parents=True, exist_ok=True)
        path = shared / f"launcher-{uuid.uuid4().hex}.pkl"
        with open(path, "wb") as file:
            cloudpickle.dump((launcher, Singleton.get_state()), file)
        return cls(path)

    def __call__(self, overrides, job_num: int) -> JobReturn:
        with open(self.path, "rb") as file:
            launcher, state = pickle.load(file)
        return launcher(overrides, "hydra.sweep.dir", job_num, f"job_id_for_{job_num}", state)

    def checkpoint(self, *args):
        """Requeue this member (submitit calls it on SIGUSR2): the same call, which reruns the member
        from its start; frame resumes it from its run directory's checkpoints."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


def max_array_size() -> int:
    """SLURM's MaxArraySize: array indices stay below it (1001 unless `scontrol show config` says otherwise)."""
    listing = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", listing.stdout, re.MULTILINE)
    return int(found.group(1)) if found else 1001


def squeue_states(array_ids: Sequence[str]) -> dict[str, str] | None:
    """{"<array>_<index>": STATE} of the jobs SLURM still knows (queued, running, or ended less than
    MinJobAge ago: no accounting needed); None if squeue failed."""
    listing = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(array_ids), "-o", "%i %T"], capture_output=True, text=True
    )
    if listing.returncode != 0:
        # squeue exits 1 for ids it no longer knows (all finished): that is an empty answer
        return {} if "Invalid job id" in listing.stderr else None
    return {
        task: state
        for line in listing.stdout.splitlines()
        if line.strip()
        for job_id, state in [line.split()]
        for task in _tasks(job_id)
    }


def _tasks(job_id: str) -> list[str]:
    """`123_[0-2,5%32]` (array tasks SLURM has not split off, as a cancelled pending array may show) as
    ["123_0", "123_1", "123_2", "123_5"]; any other id as itself."""
    grouped = re.fullmatch(r"(\d+)_\[([\d,-]+)(?:%\d+)?\]", job_id)
    if grouped is None:
        return [job_id]
    array, tasks = grouped.groups()
    indices = []
    for part in tasks.split(","):
        first, _, last = part.partition("-")
        indices += range(int(first), int(last or first) + 1)
    return [f"{array}_{index}" for index in indices]


def _results_written(job) -> bool:
    return all(path.exists() for path in result_paths(job))


def _slurm_return(member: sweep.Member, job) -> JobReturn:
    """Rank 0's JobReturn of a job whose result files exist (submitit writes ("success"|"error", value))."""
    outcome, value = read_result(result_paths(job)[0])
    if outcome == "success":
        member.returned(value)
        return value  # pyright: ignore[reportReturnType]
    last = [line for line in str(value).strip().splitlines() if line.strip()][-1]
    member.status, member.exit_code, member.error = "failed", 1, last
    return sweep.failed_return(
        member,
        sweep.MemberFailed(
            f"member {member.num} (SLURM job {member.job_id}) failed: {last}\n"
            f"traceback: {member.run_dir / ERROR_FILE}; SLURM log: {stderr_path(job)}"
        ),
    )


def _cancelled_return(member: sweep.Member) -> JobReturn:
    member.status, member.error = "cancelled", f"SLURM job {member.job_id} was cancelled before it started"
    return sweep.failed_return(member, sweep.MemberFailed(member.error))


def _lost_return(member: sweep.Member, job) -> JobReturn:
    """A job that left the queue without writing a result: interrupted (exit 75) or killed."""
    record = member.record
    if record.get("status") == "interrupted":
        member.status, member.exit_code = "interrupted", EXIT_INTERRUPTED
        member.error = "stopped by a signal after a checkpoint (not requeued); run the same command to continue"
    else:
        member.status, member.exit_code = "failed", record.get("exit_code")
        member.error = (
            f"SLURM job {member.job_id} ended without a result (killed, cancelled, out of memory "
            f"or a lost node); see {stderr_path(job)}"
        )
    return sweep.failed_return(member, sweep.MemberFailed(member.error))


ConfigStore.instance().store(group="hydra/launcher", name="frame_slurm", node=FrameSlurmConf, provider="frame")
