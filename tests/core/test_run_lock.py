"""One process per run directory (frame.core.run_lock): refusal naming the holder, takeover of dead holders on
this host and on others, a requeued SLURM job taking its own lock back, and two real `frame train`."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from frame.core import run_lock
from frame.core.run_lock import RunLock, RunLocked
from tests.conftest import TINY, run_frame


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_live_holder_is_refused_by_name_and_keeps_its_lock(tmp_path):
    with RunLock(tmp_path, heartbeat_s=0) as first:
        with pytest.raises(RunLocked, match=rf"in use by pid {os.getpid()} on .* \(since "):
            RunLock(tmp_path, heartbeat_s=0).acquire()
        assert run_lock.read(tmp_path / ".lock") == first.mine
    assert not (tmp_path / ".lock").exists()  # released on exit


def test_a_dead_holder_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    lock = RunLock(tmp_path, heartbeat_s=0)
    lock.acquire()
    stale = {**lock.mine, "pid": _dead_pid()}
    (tmp_path / ".lock").write_text(json.dumps(stale))
    with RunLock(tmp_path, heartbeat_s=0) as second:
        assert second.mine["pid"] == os.getpid()
    assert "taking over" in caplog.text and "no longer exists" in caplog.text
    # a reused pid (same number, another start time) is another process: the holder is gone
    (tmp_path / ".lock").write_text(json.dumps({**stale, "pid": os.getppid(), "proc_start": 1}))
    with RunLock(tmp_path, heartbeat_s=0):
        pass


def test_another_host_is_gone_only_when_its_heartbeat_is_stale(tmp_path):
    now = time.time()
    remote = {"host": "elsewhere", "pid": 1, "proc_start": 5, "since": now - 1000, "heartbeat": now - 10}
    (tmp_path / ".lock").write_text(json.dumps(remote))
    with pytest.raises(RunLocked, match="pid 1 on elsewhere"):
        RunLock(tmp_path, heartbeat_s=0).acquire()
    (tmp_path / ".lock").write_text(json.dumps({**remote, "heartbeat": now - run_lock.STALE_AFTER_S - 1}))
    with RunLock(tmp_path, heartbeat_s=0) as lock:
        assert run_lock.read(tmp_path / ".lock") == lock.mine


def test_a_requeued_slurm_job_takes_its_own_lock_back(tmp_path, monkeypatch):
    now = time.time()
    earlier = {"host": "node2", "pid": 7, "proc_start": 5, "since": now, "heartbeat": now, "slurm_job_id": "41"}
    (tmp_path / ".lock").write_text(json.dumps(earlier))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with pytest.raises(RunLocked, match="SLURM job 41"):
        RunLock(tmp_path, heartbeat_s=0).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    with RunLock(tmp_path, heartbeat_s=0) as lock:
        assert lock.mine["slurm_job_id"] == "41"


def test_the_heartbeat_thread_refreshes_the_lock(tmp_path):
    with RunLock(tmp_path, heartbeat_s=0.05) as lock:
        since = lock.mine["heartbeat"]
        deadline = time.time() + 30
        while run_lock.read(tmp_path / ".lock")["heartbeat"] == since and time.time() < deadline:
            time.sleep(0.05)
        assert run_lock.read(tmp_path / ".lock")["heartbeat"] > since


_HOLD = """
import sys, time
from frame.core.run_lock import RunLock
with RunLock(sys.argv[1], heartbeat_s=0.2):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_across_hostnames_a_fresh_heartbeat_holds_and_a_stale_one_is_taken_over(tmp_path):
    """Two hosts on one directory, as on NFS/Lustre: the holder runs under another hostname (a UTS namespace)."""
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --uts is not allowed here: {probe.stderr.decode().strip()}")
    holder = subprocess.Popen(
        [
            "unshare",
            "--uts",
            "sh",
            "-c",
            f'hostname otherhost && exec "$0" -c \'{_HOLD}\' "$@"',
            sys.executable,
            str(tmp_path),
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        record = run_lock.read(tmp_path / ".lock")
        assert record["host"] == "otherhost"
        with pytest.raises(RunLocked, match="on otherhost"):  # its pid means nothing here: the heartbeat decides
            RunLock(tmp_path, heartbeat_s=0).acquire()
    finally:
        holder.kill()
        holder.wait()
    (tmp_path / ".lock").write_text(
        json.dumps({**run_lock.read(tmp_path / ".lock"), "heartbeat": time.time() - run_lock.STALE_AFTER_S - 1})
    )
    with RunLock(tmp_path, heartbeat_s=0) as lock:
        assert lock.mine["host"] != "otherhost"


@pytest.mark.slow
def test_two_frame_train_at_once_one_trains_the_other_exits_2(tmp_path):
    args = ["train", "name=same", *TINY, "trainer.epochs=3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "frame", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = tmp_path / "outputs" / "same"
    deadline = time.time() + 120
    while not (run_dir / ".lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    second = run_frame(args, cwd=tmp_path)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert second.returncode == 2, second.stderr
    assert "is in use by pid" in second.stderr and "Traceback" not in second.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and len(record["attempts"]) == 1
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(epochs) == 3 and not (run_dir / ".lock").exists()


def test_a_stop_signal_the_moment_the_early_lock_exists_finds_the_runs_flag(tmp_path, monkeypatch):
    """The lock is what a supervisor (and test_faults) sees first; with the flag installed after it, a
    SIGTERM in between killed the process (-15) and left the lock behind."""
    import signal

    from frame.core import signals
    from frame.core.run_lock import RunLock, claim_early

    handlers = []
    acquire = RunLock.acquire

    def acquire_and_look(self):
        acquire(self)
        handlers.append(signal.getsignal(signal.SIGTERM))

    monkeypatch.setattr(RunLock, "acquire", acquire_and_look)
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    try:
        claim_early(run_dir)
    finally:
        flag = signals.adopt_early()
        flag.restore()
    assert handlers and handlers[0] not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert handlers[0] == flag._handle
    lock = RunLock(run_dir)
    lock.acquire()  # the run adopts the early lock, then lets it go
    lock.release()
    assert not lock.path.exists()
