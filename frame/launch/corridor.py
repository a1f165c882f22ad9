"""One run, from Hydra's task function to `fit`: the corridor every `frame train`, `frame run`
and sweep member walks.

    task(cfg)                    Hydra's task function: the run directory Hydra made
      run(cfg, run_dir)          the outcome: result into run.json, a traceback into error.txt,
                                 a SLURM preemption handed to submitit for requeueing
        processes                one process, or the ranks of a DDP job: joined (torchrun,
                                 srun) or started here (`trainer.devices=N`, `spawn`)
          train_process(...)     one process's part: imports, run record, build_job, fit

Every attempt of a run comes back to the same run directory, so a requeued or resumed job
finds its checkpoints; a sweep only adds bookkeeping around this corridor (`frame.launch.sweep`).
"""

import gc
import logging
import os
import shutil
import signal
import socket
import time
import traceback
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from frame.compat.submitit import requeue_handler
from frame.core import run_record
from frame.core.errors import FrameError
from frame.core.exits import EXIT_INTERRUPTED
from frame.core.ranks import RankEnv, global_rank, rank_env
from frame.core.run_lock import RunLock, entries_at_claim, put_back_hydra_files
from frame.core.signals import StopFlag, adopt_early, forward
from frame.core.state_files import holds_run
from frame.training import distributed

log = logging.getLogger("frame")

ERROR_FILE = "error.txt"
KILL_GRACE_S = 30.0  # after one spawned rank failed, the others get this long to fail by themselves
_FORWARDED = (
    signal.SIGTERM,
    signal.SIGUSR2,
    signal.SIGHUP,
    signal.SIGUSR1,
)  # SIGINT reaches the ranks from the terminal itself


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: train the job in the directory Hydra made; return the best monitored
    value (what sweepers optimise)."""
    hydra = HydraConfig.get()
    return run(cfg, Path(hydra.runtime.output_dir), take_back=hydra.mode == RunMode.RUN)


def run(cfg: DictConfig, run_dir: Path, take_back: bool = False) -> Any:
    """Train one run in as many processes as it asks for; record its outcome.

    On success the result (the best monitored value) goes into `run.json` as `result`, which
    is what a re-run of a sweep reports without training again. A failure appends the
    traceback to `error.txt` and re-raises. A stop on SIGUSR2 inside a submitit SLURM job
    (a preemption or the time-limit warning) goes to submitit's handler once the checkpoint
    is written: it resubmits this Hydra job and requeues it, and the requeued job resumes
    from the checkpoint in the same run directory. With `take_back` (a single run, not a sweep
    member), a new run refused by a user error before it saved anything leaves no directory.
    """
    is_main = global_rank() == 0
    if is_main:
        log.info(
            "pid %d on %s, cpus %s%s",
            os.getpid(),
            os.uname().nodename,
            _ranges(os.sched_getaffinity(0)),
            f", CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}"
            if "CUDA_VISIBLE_DEVICES" in os.environ
            else "",
        )
    with RunLock(run_dir) if is_main else nullcontext():  # a live run in it: exit 2 before writing anything
        stop = (
            adopt_early()
        )  # a stop since the claim, or during start-up (imports, building), is honoured at the first safe point
        new = _new_run(run_dir) if is_main and take_back else None
        try:
            result = processes(cfg, run_dir, stop)
        except SystemExit as exit:
            stop.restore()  # submitit's SIGUSR2 handler back in place before it is asked to requeue
            if exit.code == EXIT_INTERRUPTED and stop.signal == signal.SIGUSR2:
                _requeue_on_slurm()
            raise
        except Exception as error:
            if is_main and not (isinstance(error, FrameError) and new is not None and _take_back(run_dir, new)):
                _append_error(run_dir, traceback.format_exc())
            if is_main and new is None and _refused(run_dir):
                put_back_hydra_files(run_dir)  # .hydra/ keeps describing the run's checkpoints
            raise
        finally:
            stop.restore()
    if is_main:
        run_record.update(run_dir, result=result)
    return result


def train_process(cfg: DictConfig, run_dir: Path, world=None, stop=None) -> float | None:
    """One process's part: build the job, train it, return the best monitored value."""
    froze = import_job_modules(cfg)  # heavy imports (torch, MONAI) start here, not on the CLI
    try:
        _stop_if_requested(stop, "while importing")  # before run.json says "running"
        from frame.training.build import build_job
        from frame.training.loop import fit

        trainer = cfg.trainer
        with run_record.RunRecord(
            run_dir,
            enabled=None if world is None else world.is_main,
            hosts=world and world.hosts,
            name=cfg.name,
            epochs=trainer.epochs,
            monitor=trainer.monitor,
            monitor_mode=trainer.monitor_mode.value,
        ) as record:
            job = build_job(cfg, run_dir, world)
            record.update(config_hash=job.config_hash)
            _stop_if_requested(stop, "while building the job")
            record.trained = True  # from here a user error is a failed attempt, not a refused one
            return fit(job, stop)
    finally:
        if froze:
            gc.unfreeze()  # a process that trains another job next (a notebook, Runner) can free this one's cycles


def _stop_if_requested(stop, during: str) -> None:
    """A stop signal that came during start-up ends the run here: exit 75, nothing trained, nothing lost."""
    if stop is not None and stop.requested:
        log.warning(
            "stopped by %s %s; nothing trained yet. Run the same command again to start it.",
            signal.Signals(stop.signal).name,
            during,
        )
        raise SystemExit(EXIT_INTERRUPTED)


def import_job_modules(cfg: DictConfig) -> bool:
    """Import frame's training modules and every component's module with the garbage collector off,
    then freeze what exists out of its reach (`gc.freeze`). Returns whether it froze.

    Importing torch and MONAI creates ~800k objects that live as long as the process. Left on,
    the collector walks that growing heap again and again while they import (~1 s of a 4 s start
    on a 2-core machine: scripts/bench/startup.py), and every later full collection walks it
    again (0.3 s each). Only imports run with it off: what building the job allocates (a preload
    cache, say) is collected as usual. Where something else froze objects already, freezing is
    left to it.
    """
    enabled, ours = gc.isenabled(), gc.get_freeze_count() == 0
    gc.disable()
    try:
        from frame.training.build import import_components

        import_components(cfg)
    finally:
        if ours:
            gc.freeze()
        if enabled:
            gc.enable()
    return ours


# --- the processes of one run ---------------------------------------------------------------------


def processes(cfg: DictConfig, run_dir: Path, stop: StopFlag):
    """`train` in as many processes as the job asks for; rank 0's result."""
    env = rank_env()
    devices = cfg.trainer.devices
    if env is None and devices > 1:
        return spawn(cfg, run_dir, devices, stop)
    if env is None:
        return train_process(cfg, run_dir, distributed.World(), stop)
    if devices > 1 and devices != env.world_size:
        log.info(
            "trainer.devices=%d, but %s started %d processes: training on %d",
            devices,
            env.source,
            env.world_size,
            env.world_size,
        )
    return _train_rank(cfg, run_dir, env, stop)


def _train_rank(cfg: DictConfig, run_dir: Path, env: RankEnv, stop: StopFlag):
    with distributed.process_group(
        env, distributed.device_type(cfg.trainer.device), cfg.trainer.dist_timeout_s
    ) as world:
        world.same_on_all_ranks(str(run_dir), "run directory")
        return train_process(cfg, run_dir, world, world.shared(stop))


def spawn(cfg: DictConfig, run_dir: Path, nprocs: int, stop: StopFlag):
    """Start `nprocs` ranks on this machine (torchrun-style environment), wait, return rank 0's result.

    The parent only waits: SIGTERM and SIGUSR2 sent to it alone are passed on to the ranks
    (which checkpoint and exit 75); the first rank to fail takes the others down with it.

    Raises:
        RankFailed: a rank exited with an error or was killed.
        SystemExit(75): the ranks stopped on a signal after writing a checkpoint.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    port = _free_port()
    hydra_config = _hydra_config()
    # like torchrun: the ranks share the cores instead of each starting one thread per core
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, len(os.sched_getaffinity(0)) // nprocs))
    ranks = []
    for rank in range(nprocs):
        env = {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nprocs),
            "LOCAL_WORLD_SIZE": str(nprocs),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "FRAME_RANK_SOURCE": "spawn",
            "OMP_NUM_THREADS": threads,
        }
        with _environ(env):  # the child's environment at exec: what torchrun would have set
            process = context.Process(
                target=_rank_main,
                name=f"frame-rank{rank}",
                args=(cfg, str(run_dir), hydra_config, sender if rank == 0 else None),
            )
            process.start()
        ranks.append(process)
    sender.close()
    log.info("started %d ranks (pids %s)", nprocs, " ".join(str(p.pid) for p in ranks))

    stop.install()
    forwarded, first_failure, failed_at = False, None, None
    try:
        while any(p.exitcode is None for p in ranks):
            wait([p.sentinel for p in ranks if p.exitcode is None], timeout=0.5)
            if stop.requested and not forwarded and stop.signal in _FORWARDED:
                forward(stop.signal, [p.pid for p in ranks if p.exitcode is None])
                forwarded = True
            for rank, p in enumerate(ranks):
                if first_failure is None and p.exitcode not in (None, 0, EXIT_INTERRUPTED):
                    first_failure, failed_at = rank, time.monotonic()
                    log.error(
                        "rank %d exited with %s; the other ranks are killed if they do not fail within %.0f s",
                        rank,
                        _describe(p.exitcode),
                        KILL_GRACE_S,
                    )
            if failed_at is not None and time.monotonic() - failed_at > KILL_GRACE_S:
                for p in ranks:
                    if p.exitcode is None:
                        p.kill()
    finally:
        stop.restore()
        for p in ranks:  # the parent itself failed (or was told to exit at once): leave nothing behind
            if p.exitcode is None:
                p.kill()
            p.join()
    if first_failure is not None:
        raise RankFailed(
            f"rank {first_failure} of {nprocs} exited with {_describe(ranks[first_failure].exitcode)}; "
            f"the job failed (exit codes: {', '.join(_describe(p.exitcode) for p in ranks)}). "
            f"Its traceback, if any, is above."
        )
    if any(p.exitcode == EXIT_INTERRUPTED for p in ranks):
        raise SystemExit(EXIT_INTERRUPTED)
    return receiver.recv() if receiver.poll() else None


class RankFailed(RuntimeError):
    """One process of a multi-process job failed, so the job did."""


def _rank_main(cfg, run_dir, hydra_config, sender):
    """Entry point of a spawned rank: Hydra's view and logging, process group, train, result to the parent."""
    from frame.config.schema import register_configs

    register_configs()  # frame's resolvers (`${len:...}`), which the job's config may use
    env = rank_env()
    _configure_logging(hydra_config, env.rank)
    result = _train_rank(cfg, Path(run_dir), env, StopFlag().install())  # a forwarded stop during start-up too
    if sender is not None:
        sender.send(result)


def _hydra_config():
    """The job's Hydra config (`HydraConfig`), for the spawned ranks; None outside a Hydra job."""
    return HydraConfig.instance().cfg


def _configure_logging(hydra_config, rank: int) -> None:
    """Rank 0 logs like the parent (same train.log); the other ranks send warnings to the console."""
    import logging.config

    from omegaconf import OmegaConf

    if hydra_config is not None:
        HydraConfig.instance().cfg = hydra_config  # HydraConfig.get() works in the rank as in the parent
    if hydra_config is not None and rank == 0:
        logging.config.dictConfig(OmegaConf.to_container(hydra_config.hydra.job_logging, resolve=True))
    else:  # the other ranks: warnings and errors to the console, tagged with the rank
        logging.basicConfig(
            level=logging.WARNING, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s", force=True
        )


@contextmanager
def _environ(values: dict):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _describe(exitcode: int | None) -> str:
    if exitcode is None:
        return "running"
    if exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"code {exitcode}"


# --- helpers of `run` -------------------------------------------------------------------------------


def _ranges(cpus) -> str:
    """{0, 1, 2, 5} -> '0-2,5'."""
    cpus, parts = sorted(cpus), []
    for cpu in cpus:
        if parts and cpu == parts[-1][1] + 1:
            parts[-1][1] = cpu
        else:
            parts.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def _requeue_on_slurm() -> None:
    """Hand a SIGUSR2 that stopped training to submitit's handler (StopFlag put it back).

    submitit's handler calls the launcher's `checkpoint()` (resubmit the same Hydra job),
    runs `scontrol requeue` and exits; on ranks other than 0 it only logs. Outside a
    submitit SLURM job nothing happens and the run exits 75 as usual.
    """
    handler = requeue_handler()
    if handler is None:
        return
    log.warning("SIGUSR2 on SLURM: checkpoint written, asking submitit to requeue this job")
    handler(signal.SIGUSR2, None)  # pyright: ignore[reportCallIssue]


def _new_run(run_dir: Path) -> set[str] | None:
    """The entries a directory that holds no run yet had before this attempt claimed it (the user's own
    files where hydra.run.dir names an existing directory, an earlier attempt's `.hydra/` and log);
    None when it holds a run. Without an early claim, all it holds now count as earlier."""
    if holds_run(run_dir):
        return None
    before = entries_at_claim(run_dir)
    if before is not None:
        return before
    return {entry.name for entry in run_dir.iterdir()} if run_dir.is_dir() else set()


def _refused(run_dir: Path) -> bool:
    """Whether this attempt was refused before it trained (run.json's last attempt; none recorded: refused)."""
    attempts = run_record.read(run_dir).get("attempts") or [{}]
    return (
        not isinstance(attempts, list)
        or not isinstance(attempts[-1], dict)
        or attempts[-1].get("status", "refused") == "refused"
    )


def _take_back(run_dir: Path, before: set[str]) -> bool:
    """Remove exactly what a new run's refused attempt created (a component that would not build: a bad
    job leaves no run directory, as `frame check` promises), and the directory once empty; what was there
    before stays (`.hydra/` files are put back as they were). Nothing is removed, and False returned,
    when it started training (a failed run keeps its record) or saved a checkpoint or a metric."""
    if not _refused(run_dir) or not _empty_run_files(run_dir):
        return False
    for entry in run_dir.iterdir():
        if entry.name not in before:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    if ".hydra" in before:
        put_back_hydra_files(run_dir)
    with suppress(OSError):
        run_dir.rmdir()
    log.info("removed what this attempt made in %s: a new run that did not start leaves nothing of its own", run_dir)
    return True


def _empty_run_files(run_dir: Path) -> bool:
    """Whether the run files an attempt made hold nothing yet: no checkpoint, no metric."""
    checkpoints, metrics = run_dir / "checkpoints", run_dir / "metrics.jsonl"
    return not (checkpoints.is_dir() and any(checkpoints.iterdir())) and not (
        metrics.exists() and metrics.stat().st_size
    )


def _append_error(run_dir: Path, text: str) -> None:
    """Keep the traceback in error.txt; a full or read-only disk is reported once, not as another traceback."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / ERROR_FILE, "a") as file:
            file.write(
                f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} host {os.uname().nodename}\n{text}\n"
            )
    except OSError as error:
        log.warning("could not append the error to %s: %s", run_dir / ERROR_FILE, error.strerror)
