"""The command line: light imports, user errors with exit code 2 and no traceback."""

import json
import subprocess
import sys

import pytest

from tests.conftest import TINY, run_frame

HEAVY = ["torch", "torchvision", "monai", "wandb"]


@pytest.mark.parametrize("args", [["--help"], ["train", "--cfg", "job"], ["train", "--help"], ["train", "--info"]])
@pytest.mark.slow
def test_light_commands_do_not_import_torch(args, tmp_path):
    probe = (
        "import sys, json, runpy\n"
        f"sys.argv = ['frame', *{args!r}]\n"
        "try:\n    runpy.run_module('frame', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code in (None, 0), e.code\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cfg_job_prints_targets(tmp_path):
    out = run_frame(["train", "--cfg", "job"], cwd=tmp_path, check=0).stdout
    assert "_target_: monai.networks.nets.UNet" in out
    assert "_partial_: true" in out


@pytest.mark.slow
def test_train_help_names_the_command_and_every_group(tmp_path):
    # a process: in this one, after tests/config/test_json_job.py, Hydra lists `experiment: classify, job`
    # (a leak of conftest's in-process runner not yet found; the order of xdist's workers varies)
    out = run_frame(["train", "--help"], cwd=tmp_path, check=0, process=True).stdout
    assert out.startswith("frame train is powered by Hydra.")  # not Hydra's job name, "train"
    assert "experiment: classify, organs" in out and "hparams_search: classify_optuna" in out


BAD = [
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["trainer.epochs=-1"], "trainer.epochs"),
    (["data.split_ratio=1.5"], "data.split_ratio"),
    (["data.batch_size=0"], "data.batch_size"),
    (["model=nonexistent"], "Available options in 'model'"),
    (["trainer.nosuchkey=1"], "nosuchkey"),
    (["trainer.precision=fp8"], "trainer.precision"),
    (["--cfg", "job", "-m", "seed=1,2"], "-m and --cfg do not go together"),
]


@pytest.mark.parametrize("overrides,expected", BAD)
def test_bad_input_exits_2_without_traceback_or_run_dir(overrides, expected, tmp_path):
    result = run_frame(["train", *overrides], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "outputs").exists()


def test_unknown_command_suggests(tmp_path):
    result = run_frame(["trian"], cwd=tmp_path)
    assert result.returncode == 2
    assert "Did you mean 'train'?" in result.stderr


@pytest.mark.slow
def test_resume_false_refuses_existing_run_and_fresh_moves_it(tmp_path):
    run_frame(["train", *TINY, "trainer.epochs=1", "name=organs"], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "organs"
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()

    refused = run_frame(["train", *TINY, "trainer.epochs=1", "name=organs", "resume=false"], cwd=tmp_path)
    assert refused.returncode == 2
    assert "fresh=true" in refused.stderr and "resume=true" in refused.stderr
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before

    run_frame(["train", *TINY, "trainer.epochs=1", "name=organs", "fresh=true"], cwd=tmp_path, check=0)
    archived = [p for p in (tmp_path / "outputs").iterdir() if p.name.startswith("organs.")]
    assert len(archived) == 1
    assert (archived[0] / "checkpoints" / "last.pt").read_bytes() == before
