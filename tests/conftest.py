"""Shared fixtures: the real configs, shrunk so a run takes seconds on a CPU."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Overrides that shrink the default experiment to a few seconds.
TINY = [
    "data.dataset.num_samples=6",
    "data.dataset.size=[16,16,16]",
    "model.channels=[4,8]",
    "model.strides=[2]",
    "trainer.epochs=2",
    "trainer.log_every_n_steps=1",
]


def frame_command(args) -> list[str]:
    """The real `frame` command line, as `python -m frame` of the interpreter running the tests."""
    return [sys.executable, "-m", "frame", *args]


def frame_env(env=None) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}


def run_frame(args, cwd, env=None, timeout=300, check=None, **popen):
    """Run the real `frame` command in a subprocess; returns CompletedProcess (text).

    `popen` goes to subprocess.run (e.g. `preexec_fn` to set a resource limit in the child).
    """
    result = subprocess.run(frame_command(args), cwd=cwd, env=frame_env(env), capture_output=True, text=True,
                            timeout=timeout, **popen)
    if check is not None and result.returncode != check:
        raise AssertionError(f"exit {result.returncode} != {check}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def start_frame(args, cwd, env=None, **popen) -> subprocess.Popen:
    """Start the real `frame` command in the background (output merged into one text pipe unless
    `popen` redirects it): for tests that signal, watch or race a running process."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True,
             "preexec_fn": _default_sigint, **popen}
    return subprocess.Popen(frame_command(args), cwd=cwd, env=frame_env(env), **popen)


def _default_sigint() -> None:
    """A test sends the child SIGINT as a terminal would: when the suite itself runs as a background
    job (`make test &`), SIGINT is ignored and that would be inherited, so Python would never raise
    KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def metrics(run_dir) -> list[dict]:
    """Every record of a run's metrics.jsonl. Strict, unlike frame's own reader: a line that is not
    a JSON object fails the test, since a test run must never leave one."""
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) for r in records), records
    return records


@pytest.fixture
def compose(hydra_restore_singletons):
    """Compose `train.yaml` with overrides through Hydra's compose API (no run directory).

    Hydra's singletons (its version base, config store, plugins) are put back afterwards
    (`hydra_restore_singletons`, Hydra's pytest plugin): `version_base=None` here would otherwise
    change `hydra.job.chdir` for every later test in the session (Hydra's launcher suites).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from frame.config.schema import register_configs

    register_configs()

    def _compose(overrides=(), return_hydra_config=False):
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="frame.conf", version_base=None):
            return hydra_compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def require_slurm(nodes: int = 1) -> None:
    """Skip (or fail with FRAME_REQUIRE_SLURM=1, as in CI) unless `nodes` local SLURM nodes take jobs
    (`scripts/slurm-local up --nodes N`)."""
    import re
    import shutil

    problem = None
    if shutil.which("sinfo") is None:
        problem = "SLURM is not installed (scripts/slurm-local up)"
    else:
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
        if states.returncode != 0 or len(re.findall(r"idle|mixed|allocated", states.stdout)) < nodes:
            up = "scripts/slurm-local up" + (f" --nodes {nodes}" if nodes > 1 else "")
            problem = f"fewer than {nodes} SLURM nodes take jobs ({up}): {states.stdout or states.stderr}"
    if problem:
        if os.environ.get("FRAME_REQUIRE_SLURM") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


def pytest_terminal_summary(terminalreporter):
    """One line saying how to run the tests that skipped for want of the local SLURM cluster (`make test`
    on a laptop skips them all; CI sets FRAME_REQUIRE_SLURM=1, where they fail instead)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "SLURM" in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} skipped for want of the local SLURM cluster: start it with "
            "`scripts/slurm-local up` (`--nodes 2` for the multi-node ones), then run `make test` again.",
            yellow=True)
