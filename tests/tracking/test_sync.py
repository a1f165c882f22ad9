"""`frame sync`: offline attempts reach the (stand-in) W&B cloud in order, each once."""

import json

from frame.tracking.offline import offline_runs
from tests.conftest import TINY, metrics, run_frame
from tests.tracking.wandb_cloud import FakeCloud

WANDB = ["logger=[jsonl,wandb]", "logger.wandb.min_interval_s=0"]


def test_sync_uploads_attempts_in_order_each_once(tmp_path):
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=1"], cwd=tmp_path, check=0)
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=2"], cwd=tmp_path, check=0)
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


def test_sync_without_a_key_says_how_to_give_one(tmp_path, monkeypatch):
    run_frame(["train", *TINY, *WANDB, "trainer.epochs=1"], cwd=tmp_path, check=0)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    result = run_frame(["sync"], cwd=tmp_path)
    assert result.returncode == 2 and "WANDB_API_KEY" in result.stderr


def test_sync_with_nothing_to_upload(tmp_path):
    (tmp_path / "outputs").mkdir()
    assert "no offline W&B runs" in run_frame(["sync"], cwd=tmp_path, check=0).stdout
