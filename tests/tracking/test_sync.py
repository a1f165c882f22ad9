"""`frame sync`: offline attempts reach the (stand-in) W&B cloud in order, each once."""

import json

import pytest

from frame.tracking.offline import offline_runs
from tests.conftest import TINY, metrics, run_frame
from tests.tracking.wandb_cloud import FakeCloud

WANDB = ["logger=[jsonl,wandb]", "logger.wandb.min_interval_s=0"]


@pytest.mark.slow
def test_sync_uploads_attempts_in_order_each_once(tmp_path):
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=1", "name=organs"], cwd=tmp_path, check=0)
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=2", "name=organs"], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "organs"
    run_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]

    with FakeCloud() as cloud:
        env = {"WANDB_API_KEY": "local-" + "s" * 40, "WANDB_BASE_URL": cloud.url}
        dry = run_frame(["sync", "--dry-run"], cwd=tmp_path, env=env, check=0)
        assert dry.stdout.count("would upload") == 2 and not cloud.runs
        first = run_frame(["sync"], cwd=tmp_path, env=env, check=0)
        assert "uploaded 2 of 2" in first.stdout
        again = run_frame(["sync", "outputs"], cwd=tmp_path, env=env, check=0)

    assert set(cloud.runs) == {run_id}
    steps = [row["_step"] for row in cloud.history[run_id]]
    records = metrics(run_dir)
    assert steps == sorted(steps) and set(steps) == {r["step"] for r in records}
    assert again.stdout.count("already uploaded  ") == 2 and "uploaded 0 of 0" in again.stdout
    assert all(run.synced for run in offline_runs(tmp_path))
    assert not (tmp_path / "wandb").exists()  # wandb sync writes its log under DIR, not where frame sync was called


@pytest.mark.slow
def test_sync_without_a_key_says_how_to_give_one(tmp_path, monkeypatch):
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=1", "name=organs"], cwd=tmp_path, check=0)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    result = run_frame(["sync"], cwd=tmp_path)
    assert result.returncode == 2 and "WANDB_API_KEY" in result.stderr


def test_sync_with_nothing_to_upload(tmp_path):
    (tmp_path / "outputs").mkdir()
    assert "no offline W&B runs" in run_frame(["sync"], cwd=tmp_path, check=0).stdout


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sync_without_a_network_says_so_at_once_and_uploads_nothing(tmp_path, monkeypatch):
    import time

    from frame.core.errors import FrameError
    from frame.tracking.offline import sync

    folder = tmp_path / "outputs" / "organs" / "wandb" / "offline-run-20260101_000000-abc123"
    folder.mkdir(parents=True)
    (folder / "run-abc123.wandb").write_bytes(b"not uploaded")
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "s" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(FrameError, match="cannot reach W&B at http://127.0.0.1:.*nothing was uploaded"):
        sync(tmp_path / "outputs")
    assert time.monotonic() - started < 10
    assert not offline_runs(tmp_path)[0].synced


@pytest.mark.slow
def test_sync_stops_a_wandb_sync_that_gets_no_answer_after_its_timeout(tmp_path, monkeypatch, capsys):
    """A server that accepts connections and never answers (a captive portal, a dead proxy): wandb retries for
    ever; frame stops it after --timeout and says what happened."""
    import socket
    import subprocess
    import sys
    import time

    from frame.tracking.offline import sync

    run_dir = tmp_path / "outputs" / "organs"
    run_dir.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import wandb; run = wandb.init(mode='offline', dir='.', project='p'); run.log({'a': 1}); run.finish()",
        ],
        cwd=run_dir,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert offline_runs(tmp_path)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "s" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    started = time.monotonic()
    try:
        code = sync(tmp_path / "outputs", timeout_s=8)
    finally:
        silent.close()
    assert code == 1 and time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "did not finish within 8 s" in err and "run frame sync again" in err
    assert not offline_runs(tmp_path)[0].synced
