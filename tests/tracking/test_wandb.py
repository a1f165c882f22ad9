"""The W&B logger with the real client, offline; read back from its run-*.wandb files."""

import json
import logging
import socket
import time
from datetime import datetime

import pytest

from frame.tracking.offline import offline_runs
from frame.training.build import build_job
from frame.training.loop import fit
from tests.conftest import TINY, run_frame
from tests.tracking.wandb_log import history, records, run_record

WANDB = ["logger=[jsonl,wandb]", "logger.wandb.min_interval_s=0"]
KEY = "local-" + "k" * 40  # a syntactically valid key; it never reaches a real server


def _rows(run_dir):
    return [row for run in offline_runs(run_dir) for row in history(run.file)]


def _seconds_to_fallback(run_dir, phrase):
    """Seconds from the attempt's start (run.json) to the log line announcing the fallback."""
    started = json.loads((run_dir / "run.json").read_text())["attempts"][-1]["started"]
    line = next(line for line in (run_dir / "train.log").read_text().splitlines() if phrase in line)
    stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp() - started


def _wandb_warnings(text):
    return [line for line in text.splitlines() if "W&B" in line and "WARNING" in line]


def _jsonl(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _same_metrics(wandb_row, record):
    return all(wandb_row.get(k) == pytest.approx(v) for k, v in record.items() if "/" in k)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A run trained for 1 epoch, then resumed to 3 (two processes, two offline attempts)."""
    cwd = tmp_path_factory.mktemp("resumed")
    first = run_frame(["train", *TINY, *WANDB, "trainer.epochs=1", "name=organs"], cwd=cwd, check=0)
    second = run_frame(["train", *TINY, *WANDB, "trainer.epochs=3", "name=organs"], cwd=cwd, check=0)
    return cwd / "outputs" / "organs", first, second


@pytest.mark.slow
def test_offline_history_holds_every_metric_at_its_step(resumed):
    run_dir, first, _ = resumed
    rows = {row["_step"]: row for row in _rows(run_dir)}
    records = _jsonl(run_dir)
    assert records and all(_same_metrics(rows[r["step"]], r) for r in records)
    assert [r["epoch"] for r in records if "val/dice" in r] == [1, 2, 3]
    # offline without a key is the expected case: no W&B warning where frame's log goes (the console
    # handler writes to stdout, the file handler to train.log); its W&B info line shows we look there
    for output in (first.stdout + first.stderr, (run_dir / "train.log").read_text()):
        assert "W&B run" in output and "is offline" in output
        assert _wandb_warnings(output) == []


@pytest.mark.slow
def test_resumed_run_keeps_its_id_and_continues_its_steps(resumed):
    run_dir, _, _ = resumed
    attempts = offline_runs(run_dir)
    assert len(attempts) == 2
    record = json.loads((run_dir / "run.json").read_text())
    assert {run_record(a.file).run_id for a in attempts} == {record["wandb_id"]}
    assert len(record["attempts"]) == 2
    first, second = ([row["_step"] for row in history(a.file)] for a in attempts)
    assert first == sorted(first) and second == sorted(second)
    assert min(second) > max(first)  # explicit steps: the second attempt continues, it does not restart at 0
    run = run_record(attempts[1].file)
    assert run.run_group == "organs" and run.project == "frame"


@pytest.mark.slow  # a process (W&B reads its server from the environment at start-up)
def test_unreachable_server_falls_back_offline_quickly(tmp_path):
    start = time.monotonic()
    result = run_frame(
        ["train", *TINY, *WANDB, "trainer.epochs=1", "name=organs"],
        cwd=tmp_path,
        env={"WANDB_API_KEY": KEY, "WANDB_BASE_URL": "http://127.0.0.1:9"},
        timeout=120,
        check=0,
    )
    assert time.monotonic() - start < 100  # the whole run, start-up included, on a loaded 2-core machine
    warnings = _wandb_warnings(result.stdout + result.stderr)
    assert len(warnings) == 1 and "offline" in warnings[0]
    run_dir = tmp_path / "outputs" / "organs"
    assert _seconds_to_fallback(run_dir, "is not reachable") < 15  # the probe: a refused connection is at once
    assert _rows(run_dir)


@pytest.mark.slow
def test_silent_server_is_given_up_after_init_timeout(tmp_path):
    """A server that accepts connections but never answers: wandb.init is cut off after init_timeout_s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        run_frame(
            ["train", *TINY, *WANDB, "trainer.epochs=1", "name=organs", "logger.wandb.init_timeout_s=5"],
            cwd=tmp_path,
            env={"WANDB_API_KEY": KEY, "WANDB_BASE_URL": url},
            timeout=120,
            check=0,
        )
    assert time.monotonic() - start < 110  # wandb's own default would wait 90 s for the server alone
    run_dir = tmp_path / "outputs" / "organs"
    log = (run_dir / "train.log").read_text()
    assert 5 < _seconds_to_fallback(run_dir, "could not reach the server") < 30, log  # init_timeout_s=5
    assert _rows(run_dir), log


def _classify(compose, *overrides):
    return compose(
        [
            "experiment=classify",
            "data.dataset.num_samples=64",
            "data.batch_size=8",
            "trainer.epochs=2",
            "trainer.log_every_n_steps=1",
            "logger=[jsonl,wandb]",
            "logger.wandb.mode=offline",
            *overrides,
        ]
    )


def test_a_wandb_failure_mid_run_is_logged_once_and_training_goes_on(compose, tmp_path, caplog):
    job = build_job(_classify(compose), tmp_path)
    logger = job.loggers[1]
    calls = []
    original_start = logger.start

    def start_then_break(*args):
        original_start(*args)

        def broken(*a, **k):
            calls.append(1)
            raise ConnectionError("the W&B service went away")

        logger.run.log = broken

    logger.start = start_then_break
    with caplog.at_level(logging.WARNING, logger="frame"):
        fit(job)
    assert len(calls) == 1
    assert len([r for r in caplog.records if "W&B failed" in r.message]) == 1
    assert [r["epoch"] for r in _jsonl(tmp_path) if "val/accuracy" in r] == [1, 2]


def test_training_rows_are_throttled_validation_rows_are_not(compose, tmp_path):
    fit(build_job(_classify(compose, "logger.wandb.min_interval_s=3600"), tmp_path))
    rows = _rows(tmp_path)
    assert len([r for r in _jsonl(tmp_path) if "train/loss" in r]) == 14
    assert len(rows) <= 4  # the first training row, then one row per validation (with the newest training row)
    assert [r["epoch"] for r in rows if "val/accuracy" in r] == [1, 2]


@pytest.mark.slow
def test_multirun_members_are_separate_wandb_runs(tmp_path):
    run_frame(
        ["train", "-m", *TINY, *WANDB, "trainer.epochs=1", "name=organs", "optimizer.lr=1e-3,1e-2"],
        cwd=tmp_path,
        check=0,
    )
    members = sorted((tmp_path / "outputs" / "organs-sweep").glob("*optimizer.lr=*"))
    assert len(members) == 2
    ids = [json.loads((m / "run.json").read_text())["wandb_id"] for m in members]
    assert len(set(ids)) == 2
    for member, run_id in zip(members, ids):
        (attempt,) = offline_runs(member)
        assert run_record(attempt.file).run_id == run_id
        assert any(r.WhichOneof("record_type") == "exit" for r in records(attempt.file))
        assert run_record(attempt.file).run_group == "organs"


def _summary(path):
    """The summary a `run-*.wandb` file holds: its summary records' updates, later ones winning."""
    summary = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "summary":
            summary.update(
                {
                    "/".join(item.nested_key) if item.nested_key else item.key: json.loads(item.value_json)
                    for item in record.summary.update
                }
            )
    return summary


@pytest.mark.slow
def test_test_set_figures_land_in_the_summary(compose, tmp_path):
    """data.test is scored with best.pt after training; W&B's summary shows those test/... figures
    (the run page's table), the same as run.json's."""
    test_set = (
        "data.test.dataset={_target_:frame.data.synthetic.SyntheticOrgans,"
        "labels:[liver,spleen,kidney_l,kidney_r],num_samples:2,size:[16,16,16],seed:5}"
    )
    fit(build_job(compose([*TINY, "logger=[jsonl,wandb]", "logger.wandb.mode=offline", test_set]), tmp_path))
    (attempt,) = offline_runs(tmp_path)
    summary = _summary(attempt.file)
    test = json.loads((tmp_path / "run.json").read_text())["test"]
    figures = {key: value for key, value in test.items() if key.startswith("test/")}
    assert {"test/loss", "test/dice", "test/dice/liver"} <= set(figures)
    assert {key: summary.get(key) for key in figures} == pytest.approx(figures)


def test_the_runs_status_lands_in_the_summary(compose, tmp_path):
    """W&B calls every run that exits 0 finished; a pruned sweep member says `pruned` in its summary."""
    job = build_job(compose([*TINY, "logger=[wandb]", "logger.wandb.mode=offline"]), tmp_path)
    (logger,) = job.loggers
    logger.start(job.run_dir, job.config_dict, None)
    logger.finish("pruned")
    (attempt,) = offline_runs(tmp_path)
    assert _summary(attempt.file)["status"] == "pruned"
