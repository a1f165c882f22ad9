"""Fault cases of issue 13 that need no training: stop signals, a refused attempt's record, a changed
monitor on resume, the continue hint after fresh=true, damaged metrics lines (docs/design/reliability.md)."""

import json
import os
import signal
import sys
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from frame.core import run_record
from frame.core.errors import FrameError
from frame.core.signals import StopFlag


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM])
def test_hangup_and_usr1_stop_like_sigterm(signum):
    stop = StopFlag().install()
    try:
        os.kill(os.getpid(), signum)
        assert stop.requested and stop.signal == signum
    finally:
        stop.restore()


def test_installs_nest_and_only_the_outermost_restore_puts_handlers_back():
    before = signal.getsignal(signal.SIGUSR2)
    stop = StopFlag().install()
    stop.install()  # the loop installs again inside the run's install
    stop.restore()
    assert signal.getsignal(signal.SIGUSR2) == stop._handle
    stop.restore()
    assert signal.getsignal(signal.SIGUSR2) is before


def test_a_refused_attempt_keeps_the_runs_status_and_records_exit_2(tmp_path):
    with run_record.RunRecord(tmp_path, heartbeat_s=0, enabled=True, name="x") as record:
        record.trained = True
    assert run_record.read(tmp_path)["status"] == "complete"
    with pytest.raises(FrameError):
        with run_record.RunRecord(tmp_path, heartbeat_s=0, enabled=True, name="x"):
            raise FrameError("the config changed")  # a refused resume, before training
    record = run_record.read(tmp_path)
    assert (record["status"], record["exit_code"]) == ("complete", 0)
    assert [(a["status"], a["exit_code"]) for a in record["attempts"]] == [("complete", 0), ("refused", 2)]


def test_a_user_error_while_training_is_a_failed_attempt_with_exit_2(tmp_path):
    with pytest.raises(FrameError):
        with run_record.RunRecord(tmp_path, heartbeat_s=0, enabled=True, name="x") as record:
            record.trained = True
            raise FrameError("trainer.monitor is not a validation metric")
    assert (run_record.read(tmp_path)["status"], run_record.read(tmp_path)["exit_code"]) == ("failed", 2)


def test_a_changed_monitor_on_resume_starts_best_tracking_over(caplog):
    from frame.training.state import TrainState, _follow_monitor

    saved = {"config": "trainer:\n  monitor: val/loss\n", "state": {"maximize": False}}
    job = SimpleNamespace(cfg=OmegaConf.create({"trainer": {"monitor": "val/dice"}}))
    state = TrainState(best=0.1, maximize=True)
    _follow_monitor(job, state, saved)
    assert state.best is None and "monitor changed" in caplog.text
    job.cfg.trainer.monitor = "val/loss"
    same = TrainState(best=0.1, maximize=False)
    _follow_monitor(job, same, saved)
    assert same.best == 0.1


def test_the_continue_hint_drops_fresh_and_resume(monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    from frame.tracking import console

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # outside a Hydra run, whatever an earlier test left
    monkeypatch.setattr(sys, "argv", ["frame", "train", "name=a", "fresh=true", "resume=false", "seed=1"])
    assert console._command() == "frame train name=a seed=1"


def test_damaged_metrics_lines_are_dropped_on_read_and_on_resume(tmp_path, caplog):
    from frame.tracking.jsonl import JsonlLogger, read_metrics

    path = tmp_path / "metrics.jsonl"
    good = [{"step": 1, "epoch": 0, "train/loss": 1.0}, {"step": 2, "epoch": 1, "val/loss": 0.5}]
    path.write_bytes(
        b"\n".join(
            [
                json.dumps(good[0]).encode(),
                b'{"step": null}',
                b"[1, 2]",
                b"\xff\xfe bad",
                json.dumps(good[1]).encode(),
                b'{"step": 3, "ep',
            ]
        )
    )
    assert read_metrics(tmp_path) == good
    assert "dropped 3 damaged line(s) (line 2, 3, 4)" in caplog.text
    logger = JsonlLogger()
    logger.start(tmp_path, {}, resume_step=2)
    logger.finish("complete")
    assert [json.loads(line) for line in path.read_text().splitlines()] == good


@pytest.mark.slow
def test_a_stop_during_start_up_exits_75_and_leaves_no_running_record(tmp_path):
    import subprocess
    import time

    from tests.conftest import TINY

    run_dir = tmp_path / "outputs" / "early"
    process = subprocess.Popen(
        [sys.executable, "-m", "frame", "train", "name=early", *TINY],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not (run_dir / ".lock").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # at once: the lock is taken before Hydra sets the job up and torch imports
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 75, out
    assert "Traceback" not in out
    assert run_record.read(run_dir).get("status") in (None, "interrupted")
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow
def test_a_full_disk_is_one_message_exit_2_and_the_checkpoints_stay_intact(tmp_path):
    import shutil
    import subprocess

    from tests.conftest import TINY, run_frame

    run_frame(["train", "name=full", *TINY, "trainer.epochs=1"], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "full"
    aside = run_dir.with_name("aside")
    run_dir.rename(aside)
    run_dir.mkdir()
    size = sum(-(-path.stat().st_size // 4096) * 4096 for path in aside.rglob("*") if path.is_file())  # pages
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size + 8192}", "tmpfs", str(run_dir)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        shutil.copytree(aside, run_dir, dirs_exist_ok=True)
        before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
        result = run_frame(["train", "name=full", *TINY, "trainer.epochs=2"], cwd=tmp_path)
        after = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    finally:
        subprocess.run(["umount", str(run_dir)], check=True)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("frame: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], output  # run.json at start, or the checkpoint
    assert "Traceback" not in output and output.count("No space left on device") <= 3  # + run.json, error.txt once
    assert after == before


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_during_shutdown_exit_75_or_130_without_a_traceback(tmp_path, signum):
    """A stop, then the same signal again and again (an impatient user, a process manager) through the
    checkpoint write, the loggers' finish, Hydra's teardown and the interpreter's exit."""
    import time

    from frame.training.checkpoint import load_checkpoint
    from tests.conftest import TINY, start_frame

    run_dir = tmp_path / "outputs" / "twice"
    process = start_frame(["train", "name=twice", *TINY, "trainer.epochs=200"], cwd=tmp_path)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "last.pt").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    while process.poll() is None:
        process.send_signal(signum)
        time.sleep(0.005)
    out = process.stdout.read()
    assert process.returncode in (75, 130), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["step"] > 0
