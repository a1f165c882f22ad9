"""run.json: attempts, identity, and telling a live run from a dead one."""

import json
import os
import subprocess
import time

import pytest

from frame.core import run_record
from frame.core.run_record import RunRecord, liveness, wall_time


def test_attempts_identity_and_outcomes(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with RunRecord(tmp_path, heartbeat_s=0, name="x", monitor="val/loss") as record:
        record.update(config_hash="abc")
        assert run_record.read(tmp_path)["status"] == "running"
    with pytest.raises(SystemExit):
        with RunRecord(tmp_path, heartbeat_s=0, name="x"):
            raise SystemExit(75)
    with pytest.raises(ValueError):
        with RunRecord(tmp_path, heartbeat_s=0, name="x"):
            raise ValueError("boom")
    saved = json.loads((tmp_path / "run.json").read_text())
    assert [a["status"] for a in saved["attempts"]] == ["complete", "interrupted", "failed"]
    assert saved["status"] == "failed" and saved["exit_code"] == 1
    assert saved["attempts"][0]["slurm"] == {"job_id": "1234", "restart_count": "1"}
    assert saved["config_hash"] == "abc" and saved["frame_version"] and saved["monitor"] == "val/loss"


def test_git_commit_and_dirty_flag(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    state = run_record.git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert run_record.git_state(tmp_path)["dirty"] is True
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git must not look above the test's folder
    assert run_record.git_state(outside) is None


def test_heartbeat_thread_refreshes(tmp_path):
    with RunRecord(tmp_path, heartbeat_s=0.05, name="x"):
        first = run_record.read(tmp_path)["heartbeat"]
        time.sleep(0.3)
        assert run_record.read(tmp_path)["heartbeat"] > first


def test_liveness_rules():
    here = {
        "status": "running",
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "proc_start": run_record.process_start(os.getpid()),
    }
    assert liveness(here) is True
    assert liveness({**here, "proc_start": here["proc_start"] + 1}) is False  # a reused pid is another process
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert liveness({**here, "pid": dead.pid}) is False
    now = time.time()
    remote = {"status": "running", "host": "elsewhere", "pid": 1, "heartbeat": now - 30}
    assert liveness(remote, now) is True
    assert liveness({**remote, "heartbeat": now - run_record.STALE_AFTER_S - 1}, now) is False
    assert liveness({"status": "complete"}) is None


def test_wall_time_adds_attempts():
    record = {"status": "complete", "attempts": [{"started": 0.0, "ended": 10.0}, {"started": 100.0, "ended": 105.0}]}
    assert wall_time(record) == 15.0


def test_only_rank_zero_keeps_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # as torchrun sets them: one rule for "am I rank 0" (frame.training.distributed)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with RunRecord(tmp_path, heartbeat_s=0, name="x") as record:
        record.update(config_hash="abc")
    assert not (tmp_path / "run.json").exists()
    with RunRecord(tmp_path, heartbeat_s=0, enabled=True, name="x"):
        pass
    assert run_record.read(tmp_path)["status"] == "complete"
