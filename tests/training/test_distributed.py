"""DDP on this machine: 2 gloo processes started by `trainer.devices=2` (torchrun-style)."""

import json
import os
import re
import signal
import time

import pytest
import torch

from tests.conftest import metrics, run_frame, start_frame

# 256 training items: 8 steps of 32 in one process, or 8 steps of 16 on each of two ranks (the same
# global batch, no padding, no ragged last batch). No dropout: its masks depend on the per-rank batch.
BASE = ["experiment=classify", "data.dataset.num_samples=320", "model.dropout=0", "logger=[jsonl]"]
EXACT = [*BASE, "trainer.epochs=3", "trainer.log_every_n_steps=4"]
ONE = {"OMP_NUM_THREADS": "1"}


def _val_losses(run_dir):
    records = metrics(run_dir)
    return [r["val/loss"] for r in records if "val/loss" in r]


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("one")
    run_frame(["train", *EXACT, "data.batch_size=32", "name=one"], cwd=cwd, env=ONE, check=0)
    return cwd / "outputs" / "one"


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, one_process):
    result = run_frame(["train", *EXACT, "data.batch_size=16", "trainer.devices=2", "name=two"], cwd=tmp_path, check=0)
    two = tmp_path / "outputs" / "two"
    assert "started 2 ranks" in (two / "train.log").read_text()
    assert "rank 0 of 2 joined the process group (gloo, spawn)" in (two / "train.log").read_text()
    assert _val_losses(two) == pytest.approx(_val_losses(one_process), rel=1e-5)
    for name, tensor in _weights(one_process).items():
        torch.testing.assert_close(_weights(two)[name], tensor, rtol=1e-5, atol=1e-6)
    record = json.loads((two / "run.json").read_text())
    assert record["status"] == "complete" and len(record["attempts"]) == 1  # rank 0 alone keeps the record
    assert "Traceback" not in result.stderr


def _rank_pids(run_dir, timeout=120):
    """The ranks' pids from the parent's log, once training has logged a step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
        started = re.search(r"started 2 ranks \(pids (\d+) (\d+)\)", log)
        if started and (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text():
            return int(started.group(1)), int(started.group(2))
        time.sleep(0.2)
    raise AssertionError(f"no training step logged in {timeout} s")


def test_a_killed_rank_fails_the_job_in_bounded_time(tmp_path):
    args = [
        "train",
        "experiment=classify",
        "data.dataset.num_samples=20000",
        "trainer.epochs=500",
        "logger=[jsonl]",
        "trainer.devices=2",
        "name=killed",
        "trainer.log_every_n_steps=10",
    ]
    process = start_frame(args, tmp_path)
    _, rank1 = _rank_pids(tmp_path / "outputs" / "killed")
    killed_at = time.monotonic()
    os.kill(rank1, signal.SIGKILL)
    output, _ = process.communicate(timeout=120)
    took = time.monotonic() - killed_at
    assert process.returncode not in (0, 75), output
    assert "rank 1 of 2 exited with signal SIGKILL" in output
    assert took < 60, f"the job took {took:.0f} s to fail after a rank died"


def test_a_signal_to_one_rank_stops_both_at_the_same_step_and_resume_matches(tmp_path, one_process):
    """SIGUSR2 to rank 1 alone: the ranks agree, rank 0 checkpoints, exit 75; the re-run ends like an uninterrupted run."""
    two = ["train", *BASE, "data.batch_size=16", "trainer.devices=2", "name=stopped", "trainer.log_every_n_steps=1"]
    process = start_frame([*two, "trainer.epochs=400"], tmp_path)
    run_dir = tmp_path / "outputs" / "stopped"
    _, rank1 = _rank_pids(run_dir)
    os.kill(rank1, signal.SIGUSR2)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 75, output
    assert "stopped by SIGUSR2" in (run_dir / "train.log").read_text()  # rank 0 took rank 1's signal
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert 0 < saved["step"] < 400 * 8

    # finish a few epochs later; one process with the same global batch is the uninterrupted reference
    epochs = saved["epoch"] + 2
    resumed = run_frame([*two, f"trainer.epochs={epochs}"], cwd=tmp_path, check=0)
    assert "resuming from" in resumed.stdout + resumed.stderr
    reference = tmp_path / "reference"
    reference.mkdir()
    run_frame(
        ["train", *BASE, "data.batch_size=32", f"trainer.epochs={epochs}", "name=ref"], cwd=reference, env=ONE, check=0
    )
    for name, tensor in _weights(reference / "outputs" / "ref").items():
        torch.testing.assert_close(_weights(run_dir)[name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_under_torchrun_only_rank_0_claims_the_run_directory(tmp_path):
    """`torchrun --nproc-per-node=2 -m frame train ... fresh=true` over a finished run: rank 0 alone moves it
    aside and takes the lock, writes .hydra/ and train.log; rank 1 joins (before: refused by rank 0's lock,
    or a second move aside)."""
    import subprocess
    import sys
    from pathlib import Path

    job = [*BASE, "trainer.epochs=1", "data.batch_size=16", "name=tr"]
    run_frame(["train", *job], cwd=tmp_path, env=ONE, check=0)
    torchrun = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "frame",
        "train",
        *job,
        "trainer.epochs=2",
        "fresh=true",
    ]
    result = subprocess.run(
        torchrun, cwd=tmp_path, env={**os.environ, **ONE}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert len(outputs) == 2 and outputs[0] == "tr" and outputs[1].startswith("tr."), outputs  # moved aside once
    run, old = tmp_path / "outputs" / "tr", tmp_path / "outputs" / outputs[1]
    assert [r["epoch"] for r in metrics(old) if "val/loss" in r] == [1]  # the old run, intact
    assert [r["epoch"] for r in metrics(run) if "val/loss" in r] == [1, 2]
    log = (run / "train.log").read_text()
    assert "joined the process group (gloo, torchrun)" in log and "rank 1" not in log
    assert not (run / ".lock").exists()


def test_a_torchmetrics_metric_and_a_test_set_finish_under_ddp(tmp_path):
    """Was: torchmetrics synced on compute; rank 0 scored the test set alone and waited at a gloo barrier for
    a rank that had finished (exit 1). Every rank validates the whole set, so nothing is summed across ranks:
    the figures are those of one process."""
    args = [
        "train",
        *BASE,
        "data.dataset.num_samples=64",
        "data.batch_size=8",
        "trainer.epochs=1",
        "name=tm",
        "+evaluators.f1={_target_: torchmetrics.classification.MulticlassF1Score, num_classes: 4}",
        "data.test={dataset: ${data.dataset}}",
    ]
    (tmp_path / "two").mkdir()
    two = run_frame([*args, "trainer.devices=2"], cwd=tmp_path / "two", env=ONE)
    assert two.returncode == 0, two.stderr[-3000:]
    records = metrics(tmp_path / "two" / "outputs" / "tm")
    test = [r for r in records if "test/f1" in r]
    assert len(test) == 1 and 0 <= test[0]["test/f1"] <= 1
    assert (
        json.loads((tmp_path / "two" / "outputs" / "tm" / "run.json").read_text())["test"]["test/f1"]
        == test[0]["test/f1"]
    )
