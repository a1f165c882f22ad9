"""Hydra's own launcher test suites (hydra.test_utils.launcher_common_tests) against frame's
launchers, as Hydra's basic launcher and hydra-submitit-launcher run them: frame's launchers are
Hydra plugins, so any Hydra app may pick them and hold them to Hydra's contracts.

LauncherTestSuite and BatchedSweeperTestSuite sweep Hydra's test apps in this process, with
frame's sweeper and with Hydra's basic one. IntegrationTestSuite writes a plain `@hydra.main`
app into a temp dir and runs it as a subprocess: the launcher is found there only by Hydra's
plugin discovery (no frame command line registers it), its config only in Hydra's ConfigStore.
"""

import pytest
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite, LauncherTestSuite

from tests.conftest import require_slurm

# local: one member at a time on one core keeps the suites light on a small machine
LAUNCHERS = [
    pytest.param("frame_sequential", [], id="sequential"),
    pytest.param("frame_local", ["hydra.launcher.parallel=1", "hydra.launcher.cpus_per_member=1"], id="local"),
    pytest.param(
        "frame_slurm",
        [
            "hydra.launcher.timeout_min=5",
            "hydra.launcher.signal_delay_s=30",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
        ],
        id="slurm",
        marks=[pytest.mark.slurm, pytest.mark.slow],
    ),
]
SWEEPERS = [pytest.param([], id="basic-sweeper"), pytest.param(["hydra/sweeper=frame"], id="frame-sweeper")]


def _pairs():
    """Every launcher with Hydra's basic sweeper; frame's sweeper with the sequential launcher only: it is the
    basic sweeper with another check of each batch, made before any launcher is called, so its code does not
    depend on the launcher (frame's own sweeps run it with the local and SLURM launchers: tests/launch)."""
    return [
        (launcher, sweeper) for launcher in LAUNCHERS for sweeper in SWEEPERS[: 2 if launcher.id == "sequential" else 1]
    ]


def _combined(extra=()):
    return [
        pytest.param(
            launcher.values[0],
            [*sweeper.values[0], *launcher.values[1], *extra],
            id=f"{launcher.id}-{sweeper.id}",
            marks=launcher.marks,
        )
        for launcher, sweeper in _pairs()
    ]


@pytest.fixture(autouse=True)
def _cluster(request):
    if request.node.get_closest_marker("slurm"):
        require_slurm()


@pytest.mark.parametrize("launcher_name, overrides", _combined())
class TestFrameLaunchers(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides", _combined(["hydra.sweeper.max_batch_size=2"]))
class TestFrameLaunchersBatched(BatchedSweeperTestSuite):
    pass


def _integration():
    flags = ["-m", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled"]
    return [
        pytest.param(
            {},
            [*flags, f"hydra/launcher={launcher.values[0]}", *sweeper.values[0], *launcher.values[1]],
            id=f"{launcher.id}-{sweeper.id}",
            marks=launcher.marks,
        )
        for launcher, sweeper in _pairs()
    ]


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", _integration())
class TestFrameLaunchersIntegration(IntegrationTestSuite):
    pass
