"""frame's Hydra launchers: sequential, local parallel, and SLURM job arrays.

All three share the sweep bookkeeping of `frame.sweep`: members that completed in an
earlier invocation of the same sweep are not run again (their stored result is
reported), and `<sweep dir>/sweep.json` lists every member with its status.

    hydra/launcher=sequential   one member after another in this process (frame's default)
    hydra/launcher=local        members as child processes, `parallel` at a time, each pinned
                                to its own CPUs (and GPUs: CUDA_VISIBLE_DEVICES)
    hydra/launcher=slurm        one SLURM job array through submitit (hydra-submitit-launcher's
                                SlurmLauncher, with frame's waiting and bookkeeping)

Hydra only instantiates launchers from the `hydra_plugins` package, hence this module's
place; it must stay cheap to import (Hydra imports every plugin at start-up).
"""

import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from frame import sweep
from frame.distributed import global_rank
from frame.signals import EXIT_INTERRUPTED, StopFlag

log = logging.getLogger("frame")


def _run_here(launcher, overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
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
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=config,
                   job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")


def _without_side_effects(config: DictConfig) -> None:
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.output_subdir = None
        handlers = config.hydra.job_logging.get("handlers") or {}
        if "file" in handlers:
            del handlers["file"]
            root = config.hydra.job_logging.get("root") or {}
            root["handlers"] = [h for h in root.get("handlers", []) if h != "file"]


def _raise_if_failed(ret: JobReturn, job_num: int) -> JobReturn:
    if ret.status == JobStatus.FAILED:
        error = ret._return_value
        raise sweep.MemberFailed(f"member {job_num} failed: {type(error).__name__}: {error} "
                                 f"(traceback in its run directory's error.txt)") from error
    return ret


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
                    ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                  config=config, job_dir_key="hydra.sweep.dir",
                                  job_subdir_key="hydra.sweep.subdir")
                except BaseException:  # a stop signal (exit 75): the sweep stops here, the same command continues it
                    member.status = None  # the summary takes the outcome from the member's run.json
                    raise
                finally:
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)  # off the member's log
                _record(member, ret)
                returns.append(ret)
                sweep.write_summary(sweep_dir, members)
        finally:
            sweep.log_summary(sweep_dir, members)
        return returns


def _record(member: sweep.Member, ret: JobReturn) -> None:
    if ret.status == JobStatus.COMPLETED:
        member.status, member.exit_code, member.result = "complete", 0, ret._return_value
    else:
        member.status, member.exit_code = "failed", 1
        member.error = f"{type(ret._return_value).__name__}: {ret._return_value}"


def _exit_status(code) -> str:
    return "interrupted" if code == EXIT_INTERRUPTED else "failed"


# --- local parallel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """Where one member runs: the CPU cores it is pinned to and the GPUs it sees."""

    cpus: tuple[int, ...]
    gpus: tuple[str, ...]


def member_slots(parallel: int | None, cpus_per_member: int | None, gpus_per_member: int,
                 cpus: Sequence[int], gpus: Sequence[str]) -> list[Slot]:
    """Split this machine's CPUs (and GPUs) into `parallel` slots, one running member each.

    Defaults: on a GPU machine one slot per `gpus_per_member` GPUs; without GPUs one slot
    per 4 cores (at least one). Cores are shared evenly unless `cpus_per_member` is set.
    """
    from frame.errors import FrameError

    use_gpus = bool(gpus) and gpus_per_member > 0
    if parallel is None:
        parallel = len(gpus) // gpus_per_member if use_gpus else len(cpus) // (cpus_per_member or 4)
    parallel = max(1, parallel)
    if use_gpus and parallel * gpus_per_member > len(gpus):
        raise FrameError(f"hydra.launcher.parallel={parallel} members with gpus_per_member={gpus_per_member} "
                         f"need {parallel * gpus_per_member} GPUs; this machine shows {len(gpus)} ({','.join(gpus)}).")
    share = cpus_per_member or max(1, len(cpus) // parallel)
    slots = []
    for i in range(parallel):
        mine = tuple(cpus[(i * share + k) % len(cpus)] for k in range(min(share, len(cpus))))
        slots.append(Slot(mine, tuple(gpus[i * gpus_per_member:(i + 1) * gpus_per_member]) if use_gpus else ()))
    return slots


def visible_gpus() -> list[str]:
    """GPU ids this process may hand out: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists (no torch import)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True)
    return listing.stdout.split() if listing.returncode == 0 else []


class FrameLocalLauncher(FrameSequentialLauncher):
    """Members as child processes on this machine, `parallel` at a time, each in its own slot.

    A member's process is pinned to its slot's cores (sched_setaffinity, OMP_NUM_THREADS) and
    sees only its slot's GPUs (CUDA_VISIBLE_DEVICES). Members run in their own sessions: a
    Ctrl-C, SIGTERM or SIGUSR2 to the launcher is passed on once, every member checkpoints,
    and the sweep exits 75 (run the same command to continue).
    """

    def __init__(self, parallel: int | None = None, cpus_per_member: int | None = None,
                 gpus_per_member: int = 1) -> None:
        super().__init__()
        self.parallel, self.cpus_per_member, self.gpus_per_member = parallel, cpus_per_member, gpus_per_member

    def __call__(self, overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        return _run_here(self, overrides, job_dir_key, job_num, job_id, singleton_state)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        members = sweep.plan(self, job_overrides, initial_job_idx)
        slots = member_slots(self.parallel, self.cpus_per_member, self.gpus_per_member,
                             sorted(os.sched_getaffinity(0)), visible_gpus())
        folder = sweep_dir / ".local"
        folder.mkdir(parents=True, exist_ok=True)
        queue = [m for m in members if not m.skipped]
        log.info("running %d members, %d at a time: %s", len(queue), len(slots),
                 "; ".join(f"cpus {','.join(map(str, s.cpus))}" + (f" gpus {','.join(s.gpus)}" if s.gpus else "")
                           for s in slots))
        sweep.write_summary(sweep_dir, members)
        running: dict[int, tuple[sweep.Member, subprocess.Popen, Path]] = {}  # slot index -> member
        returns: dict[int, JobReturn] = {m.num: sweep.skipped_return(m) for m in members if m.skipped}
        stop, forwarded = StopFlag().install(), False
        try:
            while queue or running:
                if stop.requested and not forwarded:
                    log.warning("stop signal: no new members; passing it to the %d running ones", len(running))
                    queue.clear()
                    for _, process, _ in running.values():
                        _signal_group(process, stop.signal)
                    forwarded = True
                for index, slot in enumerate(slots):
                    if index not in running and queue:
                        member = queue.pop(0)
                        running[index] = (member, *self._start(member, slot, folder))
                time.sleep(0.2)
                for index, (member, process, path) in list(running.items()):
                    if process.poll() is not None:
                        del running[index]
                        returns[member.num] = _collect(member, process.returncode, path)
                        sweep.write_summary(sweep_dir, members)
        finally:
            stop.restore()
            for _, process, _ in running.values():  # the launcher itself failed: leave no orphans working
                _signal_group(process, signal.SIGTERM)
            sweep.log_summary(sweep_dir, members)
        if stop.requested or any(m.status == "interrupted" for m in members):
            raise SystemExit(EXIT_INTERRUPTED)
        return [returns[m.num] for m in members]

    def _start(self, member: sweep.Member, slot: Slot, folder: Path) -> tuple[subprocess.Popen, Path]:
        import cloudpickle

        path = folder / f"member-{member.num}.pkl"
        args = (member.overrides, "hydra.sweep.dir", member.num, f"local_{member.num}", Singleton.get_state())
        with open(path, "wb") as file:
            cloudpickle.dump((self, args), file)
        threads = str(len(slot.cpus))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        if slot.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        output = open(folder / f"member-{member.num}.out", "a")
        command = [sys.executable, "-c", "import sys; from frame.sweep import run_pickled; sys.exit(run_pickled(sys.argv[1]))",
                   str(path)]
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=lambda: _member_process_setup(slot.cpus))
        output.close()
        member.status = "running"
        log.info("member %d (pid %d, cpus %s%s): %s", member.num, process.pid, ",".join(map(str, slot.cpus)),
                 f", gpus {','.join(slot.gpus)}" if slot.gpus else "", " ".join(filter_overrides(member.overrides)))
        return process, path


def _member_process_setup(cpus) -> None:
    """In the member process before it starts: pin it to its cores; SIGTERM it (it checkpoints)
    if the launcher dies without passing a signal on (SIGKILL, a lost terminal)."""
    os.sched_setaffinity(0, cpus)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _collect(member: sweep.Member, code: int, path: Path) -> JobReturn:
    """The JobReturn of a finished member process, from its result file or its exit code."""
    result = Path(f"{path}.result")
    if code in (0, 1) and result.is_file():
        with open(result, "rb") as file:
            ret = pickle.load(file)
        _record(member, ret)
        member.exit_code = code
        return ret
    member.status, member.exit_code = _exit_status(code), code
    member.error = f"member process exited with {code} without a result; see {path.with_suffix('.out')}"
    return sweep.failed_return(member, sweep.MemberFailed(member.error))


# --- SLURM --------------------------------------------------------------------------------------

LOST_AFTER_S = 30.0  # a job gone from squeue this long without a result file ended without one
POLL_MAX_S = 15.0


class FrameSlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with frame's sweep bookkeeping.

    One job array for the members that are not complete yet. Waiting polls `squeue` and
    the result files, not `sacct`, so it works without SLURM accounting, and a job that
    vanishes without a result (killed, cancelled, node lost) is reported instead of
    waited on forever. `max_num_timeout` is forced to 0 with resume=false: a requeued
    job would start over and overwrite its own run.
    """

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        import submitit

        ret = _run_here(self, sweep_overrides, job_dir_key, job_num, submitit.JobEnvironment().job_id, singleton_state)
        return _raise_if_failed(ret, job_num)  # a failed member's SLURM job exits non-zero

    def executor(self):
        """The submitit executor for this launcher's parameters (what `launch` submits with)."""
        import submitit

        params = dict(self.params)
        folder = params.pop("submitit_folder")
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
                executor = self.executor()
                state = Singleton.get_state()
                args = [(m.overrides, "hydra.sweep.dir", m.num, f"job_id_for_{m.num}", state) for m in submit]
                for member, job in zip(submit, executor.map_array(self, *zip(*args))):
                    member.job_id, member.status, jobs[member.num] = job.job_id, "pending", job
                log.info("submitted %d members as SLURM job array %s in %.2f s (%.2f s planning the members "
                         "and their run directories); folder %s", len(submit), submit[0].job_id.split("_")[0],
                         time.perf_counter() - start, planned - start, self.params["submitit_folder"])
            if todo:
                sweep.write_summary(sweep_dir, members)
                returns.update(self._wait(todo, [jobs[m.num] for m in todo], sweep_dir, members))
        except KeyboardInterrupt:  # Ctrl-C: stop waiting, not the jobs
            log.warning("stopped waiting; the submitted jobs keep running. Run the same command again to "
                        "collect them (complete members are not run again).")
            raise SystemExit(EXIT_INTERRUPTED) from None
        finally:
            sweep.log_summary(sweep_dir, members)
        if any(m.status == "interrupted" for m in todo):
            raise SystemExit(EXIT_INTERRUPTED)
        return [returns[m.num] for m in members]

    def _attach(self, todo, sweep_dir) -> dict:
        """Jobs an earlier invocation submitted for these members that SLURM still runs or queues:
        waiting for them (submitit's paths follow from the folder and the job id) instead of
        training the same run directory twice."""
        from submitit.slurm.slurm import SlurmJob

        earlier = sweep.earlier_job_ids(sweep_dir, todo)
        states = squeue_states(sorted({job_id.split("_")[0] for job_id in earlier.values()})) if earlier else {}
        tasks = list(range(self.params["nodes"] * self.params["tasks_per_node"]))
        attached = {}
        for member in todo:
            job_id = earlier.get(member.num)
            if states and job_id in states:
                member.job_id, member.status = job_id, "pending"
                attached[member.num] = SlurmJob(folder=self.params["submitit_folder"], job_id=job_id, tasks=tasks)
        if attached:
            log.info("%d members are still queued or running from an earlier run of this sweep (%s): waiting for "
                     "them instead of submitting them again", len(attached),
                     " ".join(m.job_id for m in todo if m.num in attached))
        return attached

    def _wait(self, todo, jobs, sweep_dir, members) -> dict[int, JobReturn]:
        waiting = {job.job_id: (member, job) for member, job in zip(todo, jobs)}
        returns, gone_since, start = {}, {}, time.monotonic()
        while waiting:
            states = squeue_states(sorted({job_id.split("_")[0] for job_id in waiting}))
            changed = False
            for job_id, (member, job) in list(waiting.items()):
                if _results_written(job):
                    returns[member.num] = _slurm_return(member, job)
                elif states is None or job_id in states:
                    gone_since.pop(job_id, None)
                    status = "running" if states and states[job_id] in ("RUNNING", "COMPLETING") else "pending"
                    changed |= status != member.status
                    member.status = status
                    continue
                elif _task_paths(job)[0].result_pickle.exists():  # ended; a rank other than 0 left no result
                    returns[member.num] = _slurm_return(member, job)
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


def squeue_states(array_ids: Sequence[str]) -> dict[str, str] | None:
    """{"<array>_<index>": STATE} of the jobs SLURM still knows as queued or running; None if squeue failed."""
    listing = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(array_ids), "-o", "%i %T"],
                             capture_output=True, text=True)
    if listing.returncode != 0:
        # squeue exits 1 for ids it no longer knows (all finished): that is an empty answer
        return {} if "Invalid job id" in listing.stderr else None
    return dict(line.split() for line in listing.stdout.splitlines() if line.strip())


def _task_paths(job):
    return [job.task(k).paths for k in range(job.num_tasks)] if job.num_tasks > 1 else [job.paths]


def _results_written(job) -> bool:
    return all(paths.result_pickle.exists() for paths in _task_paths(job))


def _slurm_return(member: sweep.Member, job) -> JobReturn:
    """Rank 0's JobReturn of a job whose result files exist (submitit writes ("success"|"error", value))."""
    from submitit.core.utils import pickle_load

    outcome, value = pickle_load(_task_paths(job)[0].result_pickle)
    if outcome == "success":
        _record(member, value)
        return value
    last = [line for line in str(value).strip().splitlines() if line.strip()][-1]
    member.status, member.exit_code, member.error = "failed", 1, last
    return sweep.failed_return(member, sweep.MemberFailed(
        f"member {member.num} (SLURM job {member.job_id}) failed: {last}\n"
        f"traceback: {member.run_dir / sweep.ERROR_FILE}; SLURM log: {_task_paths(job)[0].stderr}"))


def _lost_return(member: sweep.Member, job) -> JobReturn:
    """A job that left the queue without writing a result: interrupted (exit 75) or killed."""
    record = member.record
    if record.get("status") == "interrupted":
        member.status, member.exit_code = "interrupted", EXIT_INTERRUPTED
        member.error = "stopped by a signal after a checkpoint (not requeued); run the same command to continue"
    else:
        member.status, member.exit_code = "failed", record.get("exit_code")
        member.error = (f"SLURM job {member.job_id} ended without a result (killed, cancelled, out of memory "
                        f"or a lost node); see {_task_paths(job)[0].stderr}")
    return sweep.failed_return(member, sweep.MemberFailed(member.error))
