"""`frame runs` tells running / complete / failed / preempted apart; `frame plot` draws runs and sweeps."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, TINY, run_frame


def _start(cwd, name, *overrides):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "frame", "train", *TINY, "trainer.epochs=500", f"name={name}", *overrides],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_metrics(run_dir, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size:
            return
        time.sleep(0.2)
    raise AssertionError(f"{run_dir} never started training")


def _runs(cwd):
    rows = json.loads(run_frame(["runs", "--json"], cwd=cwd, check=0).stdout)
    return {row["run"]: row for row in rows}


@pytest.mark.slow
def test_runs_lists_every_state(tmp_path):
    outputs = tmp_path / "outputs"
    run_frame(["train", *TINY, "name=done"], cwd=tmp_path, check=0)
    # fails in training: every step's loss is NaN (the check before the first epoch is not a step)
    failed = run_frame(
        [
            "train",
            "experiment=classify",
            "name=broken",
            "data.dataset.num_samples=64",
            "logger=[jsonl]",
            "trainer.max_bad_steps=2",
            "loss._target_=tests.training.test_loop.NanOnSteps",
            "+loss.steps=[1,2,3]",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO)},
    )
    assert failed.returncode == 2 and "non-finite" in failed.stderr, failed.stderr[-2000:]
    # started after the runs above: two endless trainings beside them would take their cores
    stopped, killed = _start(tmp_path, "stopped"), _start(tmp_path, "killed")
    try:
        _wait_for_metrics(outputs / "stopped", stopped)
        _wait_for_metrics(outputs / "killed", killed)
        live = _runs(tmp_path)
        assert live["stopped"]["status"] == "running" and live["killed"]["status"] == "running"
        stopped.send_signal(signal.SIGTERM)
        killed.send_signal(signal.SIGKILL)
        assert stopped.wait(timeout=120) == 75
        killed.wait(timeout=30)
    finally:
        for process in (stopped, killed):
            if process.poll() is None:
                process.kill()
    rows = _runs(tmp_path)
    assert {name: row["status"] for name, row in rows.items()} == {
        "done": "complete",
        "broken": "failed",
        "stopped": "preempted",
        "killed": "preempted",
    }
    assert "killed" in rows["killed"]["detail"] and "exit 75" in rows["stopped"]["detail"]
    done = rows["done"]
    assert done["epoch"] == 2 and done["epochs"] == 2 and done["monitor"] == "val/dice" and done["best"] > 0
    assert done["attempts"] == 1 and done["wall_time_s"] > 0 and done["config_hash"]
    table = run_frame(["runs"], cwd=tmp_path, check=0).stdout
    for word in ("done", "complete", "broken", "failed", "preempted", "val/dice="):
        assert word in table


def _not_blank(path):
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return pixels.std() > 5 and (pixels < 128).mean() > 0.005


@pytest.mark.slow
def test_plot_runs_and_a_sweep(tmp_path):
    run_frame(["train", *TINY, "trainer.epochs=3", "name=organs"], cwd=tmp_path, check=0)
    run_frame(["train", "-m", *TINY, "name=sweep", "optimizer.lr=1e-3,1e-2,3e-2"], cwd=tmp_path, check=0)
    single = run_frame(["plot", "outputs/organs"], cwd=tmp_path, check=0)
    assert single.stdout.strip() == "outputs/organs/plot.png" and _not_blank(tmp_path / single.stdout.strip())
    run_frame(["plot", "outputs/organs", "outputs/sweep-sweep", "-o", "both.png"], cwd=tmp_path, check=0)
    assert _not_blank(tmp_path / "both.png")
    one_row = Image.open(tmp_path / "outputs/organs/plot.png").size[1]
    assert Image.open(tmp_path / "both.png").size[1] > 1.5 * one_row  # a second row: best val/dice vs optimizer.lr
    missing = run_frame(["plot", "outputs"], cwd=tmp_path / "outputs" / "organs")
    assert missing.returncode == 2


def test_a_run_json_of_the_wrong_shape_lists_as_unreadable_and_the_others_still_list(tmp_path):
    outputs = tmp_path / "outputs"
    for name, record in [
        ("good", {"status": "complete", "epochs": 1}),
        ("a_list", [1, 2]),
        ("a_string", "x"),
        ("a_number", 3),
    ]:
        (outputs / name).mkdir(parents=True)
        (outputs / name / "run.json").write_text(json.dumps(record))
        (outputs / name / "metrics.jsonl").write_text(json.dumps({"step": 1, "epoch": 1, "val/loss": 0.5}) + "\n")
    rows = _runs(tmp_path)
    assert {name: row["status"] for name, row in rows.items()} == {
        "good": "complete",
        "a_list": "unreadable",
        "a_string": "unreadable",
        "a_number": "unreadable",
    }
    table = run_frame(["runs"], cwd=tmp_path, check=0)
    assert "unreadable" in table.stdout and "Traceback" not in table.stderr
    plotted = run_frame(["plot", "outputs/a_list", "outputs/good", "-o", "p.png"], cwd=tmp_path, check=0)
    assert "Traceback" not in plotted.stderr and (tmp_path / "p.png").stat().st_size > 0


def test_the_table_keeps_a_long_member_name_whole(tmp_path):
    names = [f"a_long_sweep_name-sweep/optimizer.lr={lr},trainer.epochs=40" for lr in ("0.001", "0.0001")]
    for name in names:
        (tmp_path / "outputs" / name).mkdir(parents=True)
        (tmp_path / "outputs" / name / "run.json").write_text(json.dumps({"status": "complete", "epochs": 1}))
    table = run_frame(["runs"], cwd=tmp_path, check=0).stdout
    assert "…" not in table
    cells = "".join(line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│"))
    assert all(name in cells for name in names), table


def test_a_fifo_garbage_or_odd_types_mark_one_run_unreadable_and_never_hang_the_table(tmp_path):
    import os

    outputs = tmp_path / "outputs"
    runs = {
        "good": {"status": "complete", "epochs": 1},
        "odd_types": {"status": "complete", "epochs": "two", "attempts": 5, "test": "x"},
    }
    for name in ("good", "odd_types", "fifo", "garbage", "fifo_metrics"):
        (outputs / name).mkdir(parents=True)
        (outputs / name / "metrics.jsonl").write_text(json.dumps({"step": 1, "epoch": 1, "val/loss": 0.5}) + "\n")
        if name in runs:
            (outputs / name / "run.json").write_text(json.dumps(runs[name]))
    os.mkfifo(outputs / "fifo" / "run.json")  # read plainly, it would block `frame runs` for ever
    (outputs / "garbage" / "run.json").write_bytes(b'{"status": "compl\xff\x00')
    (outputs / "fifo_metrics" / "metrics.jsonl").unlink()
    os.mkfifo(outputs / "fifo_metrics" / "metrics.jsonl")
    rows = {name: row for name, row in _runs(tmp_path).items()}  # run_frame's timeout fails a hang
    assert {name: row["status"] for name, row in rows.items()} == {
        "good": "complete",
        "odd_types": "unreadable",
        "fifo": "unreadable",
        "garbage": "unreadable",
        "fifo_metrics": "unreadable",
    }
    assert "is a FIFO" in rows["fifo"]["detail"] and "invalid UTF-8" in rows["garbage"]["detail"]
    assert "wrong type" in rows["odd_types"]["detail"] and "metrics.jsonl is a FIFO" in rows["fifo_metrics"]["detail"]
    table = run_frame(["runs"], cwd=tmp_path, check=0, timeout=120)
    assert "good" in table.stdout and "Traceback" not in table.stderr


def test_the_table_shows_the_overrides_a_runs_name_does_not(tmp_path, capsys, monkeypatch):
    from frame.trained.runs import runs_table

    monkeypatch.setenv("COLUMNS", "200")  # every cell on one line

    outputs = tmp_path / "outputs"
    for name, overrides in [
        ("organs+optimizer.lr=0.01", ["optimizer.lr=0.01", "logger=[jsonl]"]),
        ("pinned", ["name=pinned", "trainer.epochs=80", "data.num_workers=2"]),
    ]:
        (outputs / name / ".hydra").mkdir(parents=True)
        (outputs / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (outputs / name / "metrics.jsonl").write_text('{"step": 1, "epoch": 1, "val/loss": 0.5}\n')
    runs_table(outputs, as_json=True)
    carried = {row["run"]: row["overrides"] for row in json.loads(capsys.readouterr().out)}
    assert carried == {"organs+optimizer.lr=0.01": ["optimizer.lr=0.01"], "pinned": ["trainer.epochs=80"]}
    runs_table(outputs)
    table = capsys.readouterr().out
    assert "overrides" in table and "trainer.epochs=80" in table and table.count("optimizer.lr=0.01") == 1
