"""Exit codes and the run status each one means: one table for the run record, the launchers,
the W&B logger, the JSON-job runner and `frame runs`."""

import signal

EXIT_OK = 0
EXIT_FAILED = 1  # a crash: the traceback is in train.log / error.txt
EXIT_USER_ERROR = 2  # a mistake in a job, a config or a command line (frame.core.errors.FrameError)
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by a signal after writing a checkpoint; run the same command again
EXIT_ABORTED = 128 + signal.SIGINT  # a second SIGINT: stopped at once, no new checkpoint (the shell's 130)

_STATUS = {EXIT_OK: "complete", EXIT_INTERRUPTED: "interrupted"}
_CODE = {"complete": EXIT_OK, "pruned": EXIT_OK, "interrupted": EXIT_INTERRUPTED, "failed": EXIT_FAILED}
_MEANING = {
    EXIT_OK: "finished",
    EXIT_INTERRUPTED: "stopped (exit 75: run again to continue)",
    EXIT_USER_ERROR: "rejected (exit 2)",
}


def status_of(code: int | None) -> str:
    """complete, interrupted or failed: what a process's exit code says about its run."""
    return _STATUS.get(code, "failed")  # pyright: ignore[reportCallIssue]


def code_of(status: str) -> int:
    """The exit code a run's status stands for (failed -> 1)."""
    return _CODE.get(status, EXIT_FAILED)


def code_of_exception(kind: type | None, error: BaseException | None) -> int:
    """The exit code a process leaving with this exception (None: none) ends with."""
    if kind is None:
        return EXIT_OK
    if issubclass(kind, SystemExit):
        code = error.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILED)
    if issubclass(kind, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def meaning(code: int) -> str:
    """One phrase for a job's exit code, for people (`frame run` with several jobs)."""
    return _MEANING.get(code, f"failed (exit {code})")
