"""A planted W&B key never lands in a file that frame, Hydra, submitit or wandb write."""

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, require_slurm, run_frame

KEY = "local-" + "0123456789abcdef" * 3  # the shape of a real key (40+ characters)
WANDB = ["logger=[jsonl,console,wandb]", "logger.wandb.prediction_examples=1"]


def _env(home: Path) -> dict:
    # online is attempted (a key is set) against a closed loopback port, then offline: every code path writes
    return {
        "WANDB_API_KEY": KEY,
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "HOME": str(home),
        "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"),
        "WANDB_CACHE_DIR": str(home / ".cache" / "wandb"),
    }


def _leaks(*roots: Path, ignore=()) -> list[str]:
    needles = [KEY.encode(), KEY[6:].encode()]
    hits, scanned = [], 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in ignore:
                scanned += 1
                data = path.read_bytes()
                hits += [str(path) for needle in needles if needle in data]
    assert scanned > 12, f"only {scanned} files written: the scan would prove nothing"
    return hits


def test_single_run_and_multirun_write_no_key(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=1"], cwd=tmp_path, env=_env(home), check=0)
    run_frame(
        ["train", "-m", *TINY, *WANDB, "trainer.epochs=1", "name=sweep", "optimizer.lr=1e-3,1e-2"],
        cwd=tmp_path,
        env=_env(home),
        check=0,
    )
    outputs = tmp_path / "outputs"
    assert (outputs / "sweep-sweep" / "multirun.yaml").is_file() and list(outputs.rglob("run-*.wandb"))
    assert list(outputs.rglob("run.json")) and list(outputs.rglob(".hydra/hydra.yaml"))
    assert _leaks(tmp_path) == []
    assert not (home / ".netrc").exists()


def test_json_job_key_writes_no_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    job = {
        "name": "json_secret",
        "wandb_project_name": "p",
        "wandb_prediction_examples": 1,
        "wandb_api_key": KEY,
        "model": {"name": "frame.training.models.MLP", "in_features": 16, "out_features": 4},
        "training": {
            "epochs": 1,
            "batch_size": 16,
            "split_ratio": 0.8,
            "monitor": "val/accuracy",
            "monitor_mode": "max",
            "loss": {"name": "CrossEntropyLoss"},
            "optimizer": {"name": "Adam", "learning_rate": 0.001},
            "dataset": {"name": "frame.data.synthetic.SyntheticClasses", "num_samples": 64},
        },
        "evaluators": [{"name": "frame.training.evaluators.Accuracy"}],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in _env(home).items() if k != "WANDB_API_KEY"}
    # a job the converter rejects (exit 2) or any other failure is a failure: a skip would stop this check silently
    result = run_frame(["run", "job.json"], cwd=tmp_path, env=env)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "logging offline" in (tmp_path / "outputs" / "json_secret" / "train.log").read_text()  # the key was seen
    assert _leaks(tmp_path, ignore={tmp_path / "job.json"}) == []  # the user's own job file holds it, nothing else
    assert not (home / ".netrc").exists()


@pytest.mark.slurm
def test_slurm_member_writes_no_key(tmp_path):
    """A sweep member on the local SLURM cluster: sbatch script, submitit pickles and logs hold no key."""
    require_slurm()
    home = tmp_path / "home"
    home.mkdir()
    run_frame(
        [
            "train",
            "-m",
            *TINY,
            *WANDB,
            "trainer.epochs=1",
            "name=slurm_secret",
            "hydra/launcher=slurm",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "optimizer.lr=1e-3",
        ],
        cwd=tmp_path,
        env=_env(home),
        timeout=600,
        check=0,
    )
    outputs = tmp_path / "outputs" / "slurm_secret-sweep"
    assert list(outputs.rglob("*.pkl")), "submitit pickles expected"
    assert list(outputs.rglob("run-*.wandb")) and list(outputs.rglob("run.json"))
    assert _leaks(tmp_path) == []
    assert not (home / ".netrc").exists()
