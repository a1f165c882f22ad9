"""submitit (capped below 1.6 for these) past its public API: every such use of frame's is here, with
what frame needs of it; tests/compat/test_submitit.py pins each (named below).

- `attach(folder, job_id, tasks)`: submitit's SlurmJob for a job an earlier command submitted, so a
  re-run of a sweep waits for a member still queued or running instead of training its directory
  twice (submitit's public API hands out jobs only at submission). Pin: test_attach_finds_a_jobs_files.
- `result_paths(job)`: where each task of a job writes its result (`job.paths` / `job.task(k).paths`,
  `result_pickle`): read directly, so waiting polls files and squeue, not sacct. Pin: same test.
- `read_result(path)`: a result file's content, `("success", value)` or `("error", traceback text)`.
  Pin: test_a_local_jobs_result_file_reads_as_success_and_value.
- `requeue_handler()`: submitit's SIGUSR2 handler in a submitit SLURM job (a bound method of its
  SignalHandler), which frame calls after its own checkpoint to resubmit and requeue a preempted job.
  Pin: test_submitits_sigusr2_handler_is_found.
"""

import os
import pickle
import signal
from pathlib import Path


def attach(folder, job_id: str, tasks: list[int]):
    """The SlurmJob of `job_id` whose files are in `folder` (submitit's folder, `%j` included)."""
    from submitit.slurm.slurm import SlurmJob

    return SlurmJob(folder=folder, job_id=job_id, tasks=tasks)


def result_paths(job) -> list[Path]:
    """The result file of each of the job's tasks, rank 0's first."""
    paths = [job.task(k).paths for k in range(job.num_tasks)] if job.num_tasks > 1 else [job.paths]
    return [p.result_pickle for p in paths]


def stderr_path(job) -> Path:
    """Rank 0's SLURM log of errors (for messages that point there)."""
    return (job.task(0).paths if job.num_tasks > 1 else job.paths).stderr


def read_result(path) -> tuple[str, object]:
    """("success", the task's return value) or ("error", its traceback as text)."""
    with open(path, "rb") as file:
        outcome, value = pickle.load(file)
    return outcome, value


def requeue_handler():
    """submitit's SIGUSR2 handler when this process is a task of a submitit SLURM job, else None."""
    handler = signal.getsignal(signal.SIGUSR2)
    owner = getattr(handler, "__self__", None)
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or not type(owner).__module__.startswith("submitit"):
        return None
    return handler
