"""The commands on a trained run (eval, predict, export, plot) never run code from a checkpoint,
never write onto what they did not make in this command, and meet a full disk or a read-only
folder with exit 2 naming the path (issue 24)."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import run_frame
from tests.faults import fill, read_only, small_disk
from tests.trained_run import trained_run  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


class Touch:
    """Unpickled, it creates `path`: proof that code stored in a file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def received(trained_run, tmp_path):
    """A copy of the trained run whose best.pt's stored config loads a planted pickle with torch.load."""
    _, run = trained_run
    copy = tmp_path / "received"
    shutil.copytree(run, copy)
    marker, planted = tmp_path / "ran", tmp_path / "weights.pkl"
    torch.save(Touch(marker), planted)
    saved = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)
    config = OmegaConf.create(saved["config"])  # the resolved config, as YAML text
    config.model = {"_target_": "torch.serialization.load", "f": str(planted), "weights_only": False}
    saved["config"] = OmegaConf.to_yaml(config)
    torch.save(saved, copy / "checkpoints" / "best.pt")
    return copy, marker


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "{run}", "--device", "cpu"],
        ["predict", "{run}", "--output", "{tmp}/out", "--device", "cpu"],
        ["export", "{run}", "-o", "{tmp}/out"],
    ],
)
def test_a_checkpoint_whose_stored_config_runs_code_is_refused_unless_trusted(received, tmp_path, command):
    run, marker = received
    argv = [part.format(run=run, tmp=tmp_path) for part in command]
    done = run_frame(argv, cwd=tmp_path)
    assert (
        done.returncode == 2
        and "the config stored in this checkpoint is refused" in done.stderr
        and "model._target_" in done.stderr
    ), done.stderr
    assert "--trust" in done.stderr and not marker.exists()
    trusted = run_frame([*argv, "--trust"], cwd=tmp_path)  # the planted pickle runs, and what it returns is no model
    assert trusted.returncode == 2, trusted.stderr
    assert "built a _io.TextIOWrapper, not a torch.nn.Module" in trusted.stderr and "Traceback" not in trusted.stderr
    assert marker.exists()


def test_load_model_checks_the_stored_config_too(received):
    from frame import load_model
    from frame.core.errors import FrameError

    run, marker = received
    with pytest.raises(FrameError, match="refused"):
        load_model(run)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../run", "../../outputs/tiny/run", "/tmp/x"])
def test_eval_name_stays_in_its_folder(trained_run, tmp_path, name):
    _, run = trained_run
    before = (run / "run.json").read_bytes()
    done = run_frame(["eval", str(run), "--name", name, "--device", "cpu"], cwd=tmp_path)
    assert done.returncode == 2 and "expected a plain file name" in done.stderr and "Traceback" not in done.stderr
    assert (run / "run.json").read_bytes() == before


def _volume(path):
    volume = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)


def test_predict_refuses_two_inputs_that_would_land_on_one_file_before_writing(trained_run, tmp_path):
    _, run = trained_run
    (tmp_path / "in").mkdir()
    _volume(tmp_path / "in" / "a.nii")
    _volume(tmp_path / "in" / "a.nii.gz")
    done = run_frame(
        ["predict", str(run), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--device", "cpu"],
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "a.nii and" in done.stderr and "a.nii.gz would both be written to" in done.stderr, (
        done.stderr
    )
    assert not any((tmp_path / "out").iterdir())


def test_predict_into_a_file_is_refused(trained_run, tmp_path):
    _, run = trained_run
    (tmp_path / "out").write_text("mine")
    done = run_frame(["predict", str(run), "--output", str(tmp_path / "out"), "--device", "cpu"], cwd=tmp_path)
    assert done.returncode == 2 and "is not a folder" in done.stderr and (tmp_path / "out").read_text() == "mine"


def test_export_onto_a_full_disk_keeps_the_earlier_export(trained_run, tmp_path):
    _, run = trained_run
    with small_disk(tmp_path / "disk", 256 * 1024) as disk:
        (disk / "model.safetensors").write_bytes(b"earlier")
        fill(disk)
        done = run_frame(["export", str(run), "-o", str(disk)], cwd=tmp_path)
        assert (
            done.returncode == 2
            and f"cannot write {disk / 'model.safetensors'}: No space left on device" in done.stderr
        ), done.stderr
        assert "Traceback" not in done.stderr and (disk / "model.safetensors").read_bytes() == b"earlier"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "model.safetensors"]


def test_eval_in_a_read_only_run_names_the_path(trained_run, tmp_path):
    _, run = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "eval").mkdir(exist_ok=True)
    with read_only(copy / "eval"):
        done = run_frame(["eval", str(copy), "--name", "again", "--device", "cpu"], cwd=tmp_path)
    assert (
        done.returncode == 2 and f"cannot write {copy / 'eval' / 'again.json'}: Read-only file system" in done.stderr
    ), done.stderr


def test_plot_never_writes_onto_a_runs_own_files(trained_run, tmp_path):
    _, run = trained_run
    before = (run / "metrics.jsonl").read_bytes()
    done = run_frame(["plot", str(run), "-o", str(run / "metrics.jsonl")], cwd=tmp_path)
    assert done.returncode == 2 and "is an input of this command" in done.stderr, done.stderr
    assert (run / "metrics.jsonl").read_bytes() == before
    json.loads((run / "run.json").read_text())  # intact


@pytest.mark.parametrize(
    "damage, message",
    [
        ({"format": "1"}, "format of the wrong type"),
        ({"state": [1]}, "state of the wrong type"),
        ({"config": "a: [unclosed"}, "its stored config is damaged"),
        ({"config": "- a list"}, "not a mapping"),
    ],
)
def test_odd_checkpoint_contents_are_named_not_a_traceback(trained_run, tmp_path, damage, message):
    _, run = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    saved = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)
    torch.save({**saved, **damage}, copy / "checkpoints" / "best.pt")
    done = run_frame(["export", str(copy), "-o", str(tmp_path / "out")], cwd=tmp_path)
    assert (
        done.returncode == 2 and message in done.stderr and "best.pt" in done.stderr and "Traceback" not in done.stderr
    ), done.stderr
