"""The run-directory policy cannot be skipped: whatever fails before a job runs exits 2 and writes nothing."""

import json
import os
import subprocess

import pytest

from frame.config.preflight import _check
from frame.core.run_lock import RunLock
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
    # a project's evaluator: which keys it reports is unknown before it runs, so any monitor passes the check
    unknowable = "+evaluators.mine={_target_: collections.OrderedDict}"
    result = run_frame(["train", "-m", "name=s", unknowable, "trainer.monitor=x/../../../escaped", *TINY], cwd=tmp_path)
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


def test_resuming_a_run_on_a_read_only_file_system_is_exit_2_and_writes_nothing(tmp_path):
    run = _finished_run(tmp_path)
    if subprocess.run(["mount", "--bind", str(run), str(run)], capture_output=True).returncode:
        pytest.skip("needs root to bind-mount the run read-only")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(run)], check=True)
        result = run_frame(["train", "name=done", *TINY], cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(run)], check=True)
    assert result.returncode == 2, result.stderr
    assert "is not writable (a read-only file system)" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.jsonl"]


def test_a_single_run_is_locked_before_hydra_writes_into_it_and_the_run_adopts_the_lock(tmp_path, monkeypatch, compose):
    """A second process started in the same second must be refused before Hydra rewrites the first's
    .hydra/: the lock is taken in the preflight, not when the task starts."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "outputs" / "early"
    _check(compose(["name=early", *TINY], return_hydra_config=True), "hydra.run.dir")
    holder = json.loads((run / ".lock").read_text())
    assert holder["pid"] == os.getpid()
    other = run_frame(["train", "name=early", *TINY], cwd=tmp_path)
    assert other.returncode == 2 and f"is in use by pid {os.getpid()}" in other.stderr
    assert not (run / ".hydra").exists()
    with RunLock(run, heartbeat_s=0) as lock:  # what frame.launch.corridor does when the task starts
        assert lock.mine == holder
    assert not (run / ".lock").exists()


@pytest.mark.slow
def test_a_refused_resume_leaves_the_runs_hydra_files_as_they_were(tmp_path):
    run_frame(["train", "name=kept", *TINY, "trainer.epochs=1"], cwd=tmp_path, check=0)
    hydra = tmp_path / "outputs" / "kept" / ".hydra"
    before = {p.name: p.read_bytes() for p in hydra.iterdir()}
    refused = run_frame(["train", "name=kept", *TINY, "trainer.epochs=2", "model.channels=[8,16]"], cwd=tmp_path)
    assert refused.returncode == 2 and "model.channels" in refused.stderr, refused.stderr
    assert {p.name: p.read_bytes() for p in hydra.iterdir()} == before
