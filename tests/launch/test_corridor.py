"""frame.launch.corridor: a new run whose component will not build leaves no run directory behind; a run that
exists keeps what its earlier attempts saved."""

import hashlib
import json

import pytest

from tests.conftest import TINY, run_frame

BAD = ["model.channels=[4]", "model.strides=[2,2]"]  # UNet's constructor refuses this; `frame check` cannot see it


def _files(run_dir) -> dict[str, str]:
    return {
        p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _refused(result) -> bool:
    return (
        result.returncode == 2
        and "could not build model (monai.networks.nets.UNet)" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_a_new_run_whose_model_will_not_build_leaves_no_run_directory(tmp_path):
    assert _refused(run_frame(["train", "name=bad", *TINY, *BAD], cwd=tmp_path))
    assert not (tmp_path / "outputs" / "bad").exists()
    mine = tmp_path / "mine"  # hydra.run.dir naming a directory of the user's: only this attempt's files go
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "todo.txt").write_text("keep me")
    assert _refused(run_frame(["train", "hydra.run.dir=mine", *TINY, *BAD], cwd=tmp_path))
    assert _files(mine) == {"notes/todo.txt": hashlib.sha256(b"keep me").hexdigest()}


@pytest.mark.slow
def test_a_finished_run_keeps_what_it_saved_when_a_resume_will_not_build(tmp_path):
    run_frame(["train", "name=done", *TINY], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "done"
    before = _files(run_dir)
    assert _refused(run_frame(["train", "name=done", *TINY, *BAD], cwd=tmp_path))
    after = _files(run_dir)
    assert before.keys() <= after.keys()
    saved = [name for name in before if name.startswith("checkpoints/") or name == "metrics.jsonl"]
    assert len(saved) >= 2 and all(after[name] == before[name] for name in saved)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_a_refused_new_run_in_a_folder_with_an_earlier_attempts_files_leaves_them_as_they_were(tmp_path):
    """An earlier attempt refused before it made a run left `.hydra/` and its log: the next refused one
    takes back only what it made itself (issue 24), not what was there before."""
    mine = tmp_path / "mine"
    (mine / ".hydra").mkdir(parents=True)
    (mine / ".hydra" / "config.yaml").write_text("earlier: config\n")
    (mine / "train.log").write_text("earlier log\n")
    (mine / "notes.txt").write_text("keep me")
    before = _files(mine)
    assert _refused(run_frame(["train", "hydra.run.dir=mine", *TINY, *BAD], cwd=tmp_path))
    after = _files(mine)
    assert (mine / "train.log").read_text().startswith("earlier log\n")  # appended to, never removed
    del before["train.log"], after["train.log"]
    assert after == before  # Hydra's new hydra.yaml and overrides.yaml, run.json and .lock are gone
