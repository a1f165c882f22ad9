"""The run-directory policy cannot be skipped: whatever fails before a job runs exits 2 and writes nothing."""

import json

import pytest

from frame.config.preflight import _check
from frame.runlock import RunLock
from tests.conftest import TINY, run_frame


def _finished_run(tmp_path):
    run = tmp_path / "outputs" / "done"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    (run / "metrics.jsonl").write_text('{"step": 4, "epoch": 2, "val/loss": 0.1}\n')
    return run


def test_a_hydra_interpolation_does_not_let_resume_false_overwrite_a_run(tmp_path):
    run = _finished_run(tmp_path)
    for value in ["trainer.monitor=${hydra:job.name}", "data.num_workers=${hydra:job.num}"]:
        result = run_frame(["train", "name=done", "resume=false", value, *TINY], cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.startswith("frame: error:")
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"weights"
    assert not (run / ".hydra").exists() and not (run / "run.json").exists()


def test_a_name_that_interpolates_out_of_outputs_is_refused(tmp_path):
    result = run_frame(["train", "name=../../x${hydra:job.name}", *TINY], cwd=tmp_path / "")
    assert result.returncode == 2 and "name='../../xtrain' is invalid" in result.stderr
    assert not (tmp_path.parent / "xtrain").exists()


def test_a_sweep_value_cannot_name_a_member_directory_outside_the_sweep(tmp_path):
    result = run_frame(["train", "-m", "name=s", "trainer.monitor=x/../../../escaped", *TINY], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "outside its sweep's directory" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "escaped").exists()
    summary = tmp_path / "outputs" / "s-sweep" / "sweep.json"
    assert not summary.exists() or json.loads(summary.read_text())["members"] == []


def test_only_rank_0_claims_the_run_directory(tmp_path, monkeypatch, compose):
    """torchrun's other ranks run the same checks, then join rank 0's run: its lock does not refuse them,
    and fresh=true does not make them move the run rank 0 trains in aside."""
    monkeypatch.chdir(tmp_path)
    run = _finished_run(tmp_path)
    config = compose(["name=done", "fresh=true", *TINY], return_hydra_config=True)
    with RunLock(run, heartbeat_s=0):  # rank 0, training in it
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        _check(config, "hydra.run.dir")
        assert (run / "checkpoints" / "last.pt").read_bytes() == b"weights"
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(SystemExit) as refused:
            _check(config, "hydra.run.dir")
    assert refused.value.code == 2 and (run / "checkpoints" / "last.pt").is_file()
