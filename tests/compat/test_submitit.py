"""Pins of what frame needs from submitit's internals (frame/compat/submitit.py), with submitit's own
local executor running real jobs where a file format is pinned."""

import signal

import pytest
import submitit

from frame.compat import submitit as compat


def _double(x):
    return 2 * x


@pytest.mark.slow
def test_a_local_jobs_result_file_reads_as_success_and_value(tmp_path):
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local")
    executor.update_parameters(timeout_min=2)
    job = executor.submit(_double, 21)
    assert job.result() == 42
    (path,) = compat.result_paths(job)
    assert path.is_file() and compat.read_result(path) == ("success", 42)


def test_attach_finds_a_jobs_files(tmp_path):
    job = compat.attach(tmp_path / "%j", "123_4", tasks=[0, 1])
    paths = compat.result_paths(job)
    assert len(paths) == 2 and all(str(tmp_path / "123_4") in str(p) for p in paths)
    assert [p.name for p in paths] == ["123_4_0_result.pkl", "123_4_1_result.pkl"]
    assert compat.stderr_path(job).name == "123_4_0_log.err"
    (single,) = compat.result_paths(compat.attach(tmp_path / "%j", "77", tasks=[0]))
    assert single.name == "77_0_result.pkl"


def test_submitits_sigusr2_handler_is_found(tmp_path, monkeypatch):
    """Inside a submitit SLURM job, submitit's JobEnvironment installs a SIGUSR2 handler that is a bound
    method of its SignalHandler: the one frame hands a preemption to."""
    from submitit.core.job_environment import JobEnvironment
    from submitit.core.utils import JobPaths

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR2, signal.SIGTERM)}  # submitit sets both
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    try:
        assert compat.requeue_handler() is None  # not installed yet
        JobEnvironment()._handle_signals(JobPaths(tmp_path, job_id="9"), submission=None)
        handler = compat.requeue_handler()
        assert handler is not None and type(handler.__self__).__module__.startswith("submitit")
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
        assert compat.requeue_handler() is None  # only in a SLURM job
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
