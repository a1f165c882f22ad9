"""Shared fixtures: the real configs, shrunk so a run takes seconds on a CPU."""

import os
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


def run_frame(args, cwd, env=None, timeout=300, check=None, **popen):
    """Run the real `frame` command in a subprocess; returns CompletedProcess (text).

    `popen` goes to subprocess.run (e.g. `preexec_fn` to set a resource limit in the child).
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "frame", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
        **popen,
    )
    if check is not None and result.returncode != check:
        raise AssertionError(f"exit {result.returncode} != {check}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture
def compose():
    """Compose `train.yaml` with overrides through Hydra's compose API (no run directory)."""
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


def require_slurm() -> None:
    """Skip (or fail with FRAME_REQUIRE_SLURM=1, as in CI) unless a local SLURM node takes jobs."""
    import re
    import shutil

    problem = None
    if shutil.which("sinfo") is None:
        problem = "SLURM is not installed (scripts/slurm-local up)"
    else:
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
        if states.returncode != 0 or not re.search(r"idle|mixed|allocated", states.stdout):
            problem = f"no SLURM node takes jobs (scripts/slurm-local up): {states.stdout or states.stderr}"
    if problem:
        if os.environ.get("FRAME_REQUIRE_SLURM") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
