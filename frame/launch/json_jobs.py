"""Running seed JSON jobs: `frame run job.json ...` and the seed's `Runner(jobs=[...]).run()`.

One job runs in the calling process: it is converted, composed and checked,
then handed to the same Hydra app and task function as `frame train` (its
converted config is the experiment option `<file name>`). Several jobs, or
`Runner` from a user's `main.py`, run each job as a child process
`python -m frame run <job> ...`, one after another or at most `parallel` at a
time. Children rather than repeated Hydra runs in one process because each
job then starts clean: its own `src` modules (two projects may both have a
`src.Models.Net`), logging, CUDA memory and `WANDB_API_KEY`; a crash in one
job cannot take the others down; and stop signals are forwarded once.
All jobs are checked before the first one starts, so a typo in the last job
does not surface hours later.
"""

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from frame.config.app import flags_first, hydra_args
from frame.core.errors import FrameError, exit_with
from frame.core.exits import EXIT_INTERRUPTED, meaning
from frame.core.signals import forward

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


@dataclass
class Result:
    job: Path
    returncode: int


class Runner:
    """Run seed JSON jobs, as the seed's `main.py` does.

        from frame import Runner

        if __name__ == '__main__':
            Runner(jobs=['config/job_01.json', 'config/job_02.json']).run()

    Args:
        jobs: paths of JSON job files, run in this order.
        overrides: Hydra overrides applied to every job (`trainer.epochs=5`, `-m`, `optimizer.lr=1e-3,1e-4`).
        parallel: how many jobs may run at once, each in its own process (1 = one after another).
        project: the project root for every job (default: the folder holding each job's `config/`).

    `run()` returns when every job has finished. A job that fails does not stop
    the others; a stop signal (Ctrl-C, SIGTERM, SIGUSR2) is passed to the running
    jobs, which checkpoint and stop, and no further job starts. When any job did
    not finish, `run()` exits the program with that job's code (75: stopped, run
    again to continue; 1: a crash; 2: a mistake in the job).
    """

    def __init__(self, jobs, overrides=(), parallel: int = 1, project: str | Path | None = None):
        if isinstance(jobs, (str, Path)):
            jobs = [jobs]
        self.jobs = [Path(j) for j in jobs]
        self.overrides = list(overrides)
        self.parallel = max(1, int(parallel))
        self.project = project
        self._children: list[subprocess.Popen] = []
        self._stop: int | None = None
        self._lock = threading.Lock()

    def run(self) -> list[Result]:
        if not self.jobs:
            exit_with("no jobs given: Runner(jobs=['config/job_01.json', ...]).")
        check_jobs(self.jobs, self.overrides, self.project)
        previous = self._install_forwarding()
        try:
            results = self._run_all()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        _report(self.jobs, results)
        failed = [r.returncode for r in results.values() if r.returncode != 0]
        if self._stop is not None or EXIT_INTERRUPTED in failed:
            sys.exit(EXIT_INTERRUPTED)
        if failed:
            sys.exit(failed[0])
        return [results[i] for i in sorted(results)]

    # ---- children ------------------------------------------------------------------------------

    def _run_all(self) -> dict[int, Result]:
        results: dict[int, Result] = {}
        slots = threading.Semaphore(self.parallel)
        threads = []
        for index, job in enumerate(self.jobs):
            slots.acquire()
            if self._stop is not None:
                slots.release()
                break
            thread = threading.Thread(target=self._run_child, args=(index, job, results, slots), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        return results

    def _run_child(self, index: int, job: Path, results: dict, slots: threading.Semaphore) -> None:
        command = [sys.executable, "-m", "frame", "run", str(job.resolve()), *self.overrides]
        if self.project is not None:
            command += ["--project", str(Path(self.project).resolve())]
        prefixed = self.parallel > 1  # interleaved output needs to say whose it is
        try:
            with self._lock:
                child = subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE if prefixed else None,
                    stderr=subprocess.STDOUT if prefixed else None,
                    text=True,
                    start_new_session=True,  # Ctrl-C reaches the children once, through _forward
                )
                self._children.append(child)
            if prefixed:
                for line in child.stdout:  # pyright: ignore[reportOptionalIterable]
                    sys.stdout.write(f"[{job.stem}] {line}")
                    sys.stdout.flush()
            returncode = child.wait()
            with self._lock:
                self._children.remove(child)
            results[index] = Result(job, returncode)
        finally:
            slots.release()

    def _install_forwarding(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._forward) for signum in _FORWARDED}

    def _forward(self, signum, frame) -> None:
        self._stop = signum
        with self._lock:
            forward(signum, [child.pid for child in self._children if child.poll() is None])


def _report(jobs: list[Path], results: dict[int, Result]) -> None:
    if len(jobs) == 1 and all(r.returncode == 0 for r in results.values()):
        return
    lines = [
        f"  {job}: {meaning(results[i].returncode) if i in results else 'not started'}" for i, job in enumerate(jobs)
    ]
    done = sum(r.returncode == 0 for r in results.values())
    sys.stderr.write(f"frame run: {done} of {len(jobs)} jobs finished\n" + "\n".join(lines) + "\n")


# ---- one job, in this process ------------------------------------------------------------------


def check_jobs(jobs, argv, project) -> list:
    """Convert and check every job before any runs; exits 2 listing every job's problems."""
    from frame.config.check import check_job
    from frame.config.json_job import convert

    converted, problems = [], []
    overrides, config_dir = hydra_args(argv)
    for path in jobs:
        try:
            job = convert(path, project)
            check_job(job, overrides, config_dir)
            converted.append(job)
        except FrameError as error:
            problems.append(str(error))
    if problems:
        exit_with("\n".join(problems))
    return converted


def prepare_job(path: Path, argv: list[str], project=None) -> list[str]:
    """`frame run JOB [overrides]` in this process (the one that gets the W&B key): convert and check
    the job; return the command line of `frame train` that runs it."""
    from frame.config.json_job import store

    (job,) = check_jobs([path], argv, project)
    os.environ.update(job.env)  # WANDB_API_KEY: this process trains; no config or file ever holds it
    flags, overrides = flags_first(argv)
    return [*flags, f"experiment={store(job)}", *overrides]
