"""`hydra/launcher=local`: members as child processes on this machine, `parallel` at a time, each
pinned to its own CPUs (and GPUs: CUDA_VISIBLE_DEVICES)."""

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
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides, setup_globals

from frame.compat.hydra import job_outcome
from frame.core.atomic import write_file
from frame.core.errors import FrameError
from frame.core.exits import EXIT_INTERRUPTED, EXIT_USER_ERROR
from frame.core.signals import StopFlag, forward
from frame.launch import sweep
from hydra_plugins.frame_launchers.run_member import run_here
from hydra_plugins.frame_launchers.sequential import FrameSequentialLauncher

log = logging.getLogger("frame")


@dataclass
class FrameLocalConf:
    _target_: str = "hydra_plugins.frame_launchers.local.FrameLocalLauncher"
    parallel: Optional[int] = None  # members at once; None: GPUs // gpus_per_member on a GPU machine, else cores // 4
    cpus_per_member: Optional[int] = None  # cores pinned to each member; None: the machine's cores shared evenly
    gpus_per_member: int = 1  # GPUs each member sees (CUDA_VISIBLE_DEVICES)


@dataclass(frozen=True)
class Slot:
    """Where one member runs: the CPU cores it is pinned to and the GPUs it sees."""

    cpus: tuple[int, ...]
    gpus: tuple[str, ...]


def member_slots(
    parallel: int | None, cpus_per_member: int | None, gpus_per_member: int, cpus: Sequence[int], gpus: Sequence[str]
) -> list[Slot]:
    """Split this machine's CPUs (and GPUs) into `parallel` slots, one running member each.

    Defaults: on a GPU machine one slot per `gpus_per_member` GPUs; without GPUs one slot
    per 4 cores (at least one). Cores are shared evenly unless `cpus_per_member` is set.
    """
    from frame.core.errors import FrameError

    use_gpus = bool(gpus) and gpus_per_member > 0
    if parallel is None:
        parallel = len(gpus) // gpus_per_member if use_gpus else len(cpus) // (cpus_per_member or 4)
    parallel = max(1, parallel)
    if use_gpus and parallel * gpus_per_member > len(gpus):
        raise FrameError(
            f"hydra.launcher.parallel={parallel} members with gpus_per_member={gpus_per_member} "
            f"need {parallel * gpus_per_member} GPUs; this machine shows {len(gpus)} ({','.join(gpus)})."
        )
    share = cpus_per_member or max(1, len(cpus) // parallel)
    slots = []
    for i in range(parallel):
        mine = tuple(cpus[(i * share + k) % len(cpus)] for k in range(min(share, len(cpus))))
        slots.append(Slot(mine, tuple(gpus[i * gpus_per_member : (i + 1) * gpus_per_member]) if use_gpus else ()))
    return slots


def visible_gpus() -> list[str]:
    """GPU ids this process may hand out: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists (no torch import)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True
    )
    return listing.stdout.split() if listing.returncode == 0 else []


class FrameLocalLauncher(FrameSequentialLauncher):
    """Members as child processes on this machine, `parallel` at a time, each in its own slot.

    A member's process is pinned to its slot's cores (sched_setaffinity, OMP_NUM_THREADS) and
    sees only its slot's GPUs (CUDA_VISIBLE_DEVICES). Members run in their own sessions: a
    Ctrl-C, SIGTERM or SIGUSR2 to the launcher is passed on once, every member checkpoints,
    and the sweep exits 75 (run the same command to continue).
    """

    def __init__(
        self, parallel: int | None = None, cpus_per_member: int | None = None, gpus_per_member: int = 1
    ) -> None:
        super().__init__()
        self.parallel, self.cpus_per_member, self.gpus_per_member = parallel, cpus_per_member, gpus_per_member

    def __call__(self, overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        return run_here(self, overrides, job_dir_key, job_num, job_id, singleton_state)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        members = sweep.plan(self, job_overrides, initial_job_idx)
        slots = member_slots(
            self.parallel, self.cpus_per_member, self.gpus_per_member, sorted(os.sched_getaffinity(0)), visible_gpus()
        )
        folder = sweep_dir / ".local"
        folder.mkdir(parents=True, exist_ok=True)
        queue = [m for m in members if not m.skipped]
        log.info(
            "running %d members, %d at a time: %s",
            len(queue),
            len(slots),
            "; ".join(
                f"cpus {','.join(map(str, s.cpus))}" + (f" gpus {','.join(s.gpus)}" if s.gpus else "") for s in slots
            ),
        )
        sweep.write_summary(sweep_dir, members)
        running: dict[int, tuple[sweep.Member, subprocess.Popen, Path]] = {}  # slot index -> member
        returns: dict[int, JobReturn] = {m.num: sweep.skipped_return(m) for m in members if m.skipped}
        stop, forwarded = StopFlag().install(), False
        try:
            while queue or running:
                if stop.requested and not forwarded:
                    log.warning("stop signal: no new members; passing it to the %d running ones", len(running))
                    queue.clear()
                    forward(stop.signal, [process.pid for _, process, _ in running.values()])
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
            # the launcher itself failed: leave no orphans working
            forward(signal.SIGTERM, [process.pid for _, process, _ in running.values()])
            sweep.log_summary(sweep_dir, members)
        if stop.requested or any(m.status == "interrupted" for m in members):
            raise SystemExit(EXIT_INTERRUPTED)
        return [returns[m.num] for m in members]

    def _start(self, member: sweep.Member, slot: Slot, folder: Path) -> tuple[subprocess.Popen, Path]:
        import cloudpickle

        path = folder / f"member-{member.num}.pkl"
        args = (member.overrides, "hydra.sweep.dir", member.num, f"local_{member.num}", Singleton.get_state())
        write_file(path, cloudpickle.dumps((self, args)))
        threads = str(len(slot.cpus))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        if slot.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        output = open(folder / f"member-{member.num}.out", "a")
        command = [
            sys.executable,
            "-c",
            "import sys; from hydra_plugins.frame_launchers.local import run_pickled; sys.exit(run_pickled(sys.argv[1]))",
            str(path),
        ]
        process = subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _member_process_setup(slot.cpus),
        )
        output.close()
        member.status = "running"
        log.info(
            "member %d (pid %d, cpus %s%s): %s",
            member.num,
            process.pid,
            ",".join(map(str, slot.cpus)),
            f", gpus {','.join(slot.gpus)}" if slot.gpus else "",
            " ".join(filter_overrides(member.overrides)),
        )
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


def _collect(member: sweep.Member, code: int, path: Path) -> JobReturn:
    """The JobReturn of a finished member process, from its result file or its exit code."""
    result = Path(f"{path}.result")
    if code in (0, 1, EXIT_USER_ERROR) and result.is_file():
        with open(result, "rb") as file:
            ret = pickle.load(file)
        member.returned(ret)
        member.exit_code = code
        return ret
    record = member.record
    if record.get("status") in sweep.FINISHED and "result" in record:
        return _finished_return(member, record)  # a stop signal came after its outcome was recorded
    member.status, member.exit_code = "interrupted" if code == EXIT_INTERRUPTED else "failed", code
    member.error = f"member process exited with {code} without a result; see {path.with_suffix('.out')}"
    return sweep.failed_return(member, sweep.MemberFailed(member.error))


def _finished_return(member: sweep.Member, record: dict) -> JobReturn:
    """The JobReturn of a member that recorded its outcome (complete, or pruned by an Optuna sweep's pruner)
    in run.json and was then killed on its way out, before it wrote its result file."""
    from hydra.core.utils import JobStatus
    from omegaconf import OmegaConf

    member.status, member.exit_code, member.result = record["status"], 0, record["result"]
    ret = JobReturn(
        overrides=member.overrides,
        working_dir=str(member.run_dir),
        status=JobStatus.COMPLETED,
        hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(member.run_dir)}}}),
    )
    ret.return_value = record["result"]
    return ret


def run_pickled(path: str) -> int:
    """Entry point of a member process: load `(callable, args)`, call it, store the JobReturn next to it.

    Exit code: 0 when the member completed, 75 when it stopped on a signal with a checkpoint,
    2 when a user error refused it, 1 when it failed (its traceback is in the run directory's error.txt).
    """
    import cloudpickle
    from hydra.core.utils import JobStatus

    with open(path, "rb") as file:
        function, args = pickle.load(file)
    ret = function(*args)
    if ret.status == JobStatus.FAILED:  # a user error stays one (refused in sweep.json), as a plain FrameError
        error = job_outcome(ret)
        ret.return_value = (
            FrameError(str(error))
            if isinstance(error, FrameError)
            else sweep.MemberFailed(f"{type(error).__name__}: {error}")
        )
    write_file(Path(f"{path}.result"), cloudpickle.dumps(ret))
    if ret.status == JobStatus.COMPLETED:
        return 0
    return EXIT_USER_ERROR if isinstance(job_outcome(ret), FrameError) else 1


ConfigStore.instance().store(group="hydra/launcher", name="frame_local", node=FrameLocalConf, provider="frame")
