import pytest

from frame.config.rundir import claim, holds_run
from frame.errors import FrameError


def _make_run(directory):
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "checkpoints" / "last.pt").write_bytes(b"x")


def test_empty_or_missing_directory_is_free(tmp_path):
    claim(tmp_path / "new", resume=False, fresh=False)
    (tmp_path / "empty" / ".hydra").mkdir(parents=True)
    assert not holds_run(tmp_path / "empty")


def test_refuses_without_resume_and_keeps_files(tmp_path):
    run = tmp_path / "run"
    _make_run(run)
    with pytest.raises(FrameError, match="fresh=true"):
        claim(run, resume=False, fresh=False)
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"x"
    claim(run, resume=True, fresh=False)  # continuing is allowed


def test_fresh_moves_the_run_aside(tmp_path):
    run = tmp_path / "run"
    _make_run(run)
    claim(run, resume=True, fresh=True)
    assert not run.exists()
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert (moved / "checkpoints" / "last.pt").read_bytes() == b"x"


def test_a_sweep_with_a_summary_or_member_metrics_holds_a_run(tmp_path):
    (tmp_path / "a" / "lr=0.1").mkdir(parents=True)
    (tmp_path / "a" / "lr=0.1" / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "sweep.json").write_text("{}")
    assert holds_run(tmp_path / "a") and holds_run(tmp_path / "b")
