"""A plain `@hydra.main` app (no frame config, no frame command line) picks frame's launchers by
name: Hydra's plugin scan finds them, their configs come from Hydra's ConfigStore."""

import json
import subprocess
import sys

import pytest

from tests.conftest import require_slurm

APP = """
import json, os
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    where = {"x": cfg.x, "cores": len(os.sched_getaffinity(0)), "omp": os.environ.get("OMP_NUM_THREADS"),
             "slurm_job": os.environ.get("SLURM_JOB_ID")}
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "where.json"), "w") as f:
        json.dump(where, f)
    return cfg.x

main()
"""


def _sweep(tmp_path, launcher_overrides):
    (tmp_path / "app.py").write_text(APP)
    result = subprocess.run(
        [
            sys.executable,
            "app.py",
            "-m",
            "+x=1,2",
            "hydra.sweep.dir=sweep",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            *launcher_overrides,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads((tmp_path / "sweep" / f"+x={x}" / "where.json").read_text()) for x in (1, 2)]


def test_a_plain_hydra_app_runs_members_pinned_to_their_cores_with_frame_local(tmp_path):
    members = _sweep(tmp_path, ["hydra/launcher=frame_local", "hydra.launcher.cpus_per_member=1"])
    assert [(m["x"], m["cores"], m["omp"]) for m in members] == [(1, 1, "1"), (2, 1, "1")]
    entry = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["members"][0]
    assert entry["status"] == "complete" and entry["attempts"] is None  # no run.json to count them in: not 0


@pytest.mark.slurm
@pytest.mark.slow
def test_a_plain_hydra_app_runs_members_as_a_slurm_array_with_frame_slurm(tmp_path):
    require_slurm()
    members = _sweep(
        tmp_path,
        [
            "hydra/launcher=frame_slurm",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=5",
            "hydra.launcher.signal_delay_s=30",
        ],
    )
    assert [m["x"] for m in members] == [1, 2] and all(m["slurm_job"] for m in members)


def test_a_search_space_given_on_the_shell_in_either_form_runs_with_frame_optuna(tmp_path):
    """`+hydra.sweeper.params.opt.lr=...` nests under params (it stopped on an OmegaConf assertion, a
    traceback, when params was null); `opt.lr=interval(...)` is Hydra's own sweep syntax."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("opt: {lr: 0.5}\n")
    (tmp_path / "app.py").write_text("""
import hydra

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    return (cfg.opt.lr - 0.01) ** 2

main()
""")
    for name, space in (
        ("nested", "+hydra.sweeper.params.opt.lr='interval(0.001,0.1)'"),
        ("sweep", "opt.lr=interval(0.001,0.1)"),
    ):
        result = subprocess.run(
            [
                sys.executable,
                "app.py",
                "-m",
                "hydra/sweeper=frame_optuna",
                "hydra.sweeper.n_trials=3",
                f"hydra.sweep.dir={name}",
                space,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        best = (tmp_path / name / "optimization_results.yaml").read_text()
        assert "opt.lr" in best and sorted(p.name for p in (tmp_path / name).iterdir() if p.is_dir()) == ["0", "1", "2"]
