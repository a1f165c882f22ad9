"""`frame train` end to end in a subprocess, as a user runs it."""

import json

from tests.conftest import TINY, run_frame


def test_train_writes_the_run_directory_and_loss_falls(tmp_path):
    result = run_frame(["train", *TINY, "trainer.epochs=3", "name=e2e"], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "e2e"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").read_text().count("epoch ") >= 3
    assert {"last.pt", "best.pt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all({"step", "epoch", "time"} <= set(r) for r in records)
    losses = [r["val/loss"] for r in records if "val/loss" in r]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert "Traceback" not in result.stderr


def test_rerun_with_resume_continues_instead_of_retraining(tmp_path):
    run_frame(["train", *TINY], cwd=tmp_path, check=0)
    again = run_frame(["train", *TINY], cwd=tmp_path, check=0)
    assert "already finished" in again.stdout + again.stderr
    more = run_frame(["train", *TINY, "trainer.epochs=3"], cwd=tmp_path, check=0)
    assert "resuming from" in more.stdout + more.stderr
    records = [json.loads(line) for line in (tmp_path / "outputs/organs/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val/loss" in r] == [1, 2, 3]
