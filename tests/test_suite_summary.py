"""The suite itself: `make test` without the local SLURM cluster says how to run what it skipped, and xdist
keeps a file's tests in one worker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_skipped_slurm_tests_end_with_how_to_run_them(tmp_path):
    bin_only = tmp_path / "bin"  # a PATH without sinfo: this machine as a laptop sees it
    bin_only.mkdir()
    env = {**os.environ, "PATH": str(bin_only), "FRAME_REQUIRE_SLURM": "0"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "bt"),
            "tests/launch/test_secrets.py::test_slurm_member_writes_no_key",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 skipped" in result.stdout
    assert "1 skipped for want of the local SLURM cluster: start it with `scripts/slurm-local up`" in result.stdout
    assert Path(REPO / "scripts" / "slurm-local").exists()


def test_under_loadgroup_a_files_tests_share_a_worker(request):
    """`make test`'s `--dist loadgroup` keeps a file's tests in one worker (tests/conftest.py groups them) only
    where xdist's group reaches the test's id: on pytest 9.2 it does not (pyproject pins pytest below it)."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under pytest-xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@tests/test_suite_summary.py"), request.node.nodeid
