"""frame.tracking.jsonl: metrics.jsonl written line by line, cut back on resume, read back tolerantly."""

import json
import logging

import pytest

from frame.tracking.jsonl import JsonlLogger, best, better, read_metrics


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def _log(run_dir, steps, resume_step=None, epoch=0):
    logger = JsonlLogger()
    logger.start(run_dir, {}, resume_step)
    for step in steps:
        logger.log_metrics({"train/loss": 1.0 / step}, step=step, epoch=epoch)
    logger.finish("complete")


def test_each_logged_row_is_one_json_line_with_step_epoch_and_time(tmp_path):
    logger = JsonlLogger()
    logger.start(tmp_path, {}, None)
    logger.log_metrics({"train/loss": 0.5}, step=1, epoch=0)
    assert (
        read_metrics(tmp_path)[0]["train/loss"] == 0.5
    )  # on disk at once: a live run can be read, a crash loses nothing
    logger.log_metrics({"val/loss": 0.25, "val/dice": 0.75}, step=2, epoch=1)
    logger.finish("complete")
    logger.finish("complete")  # twice is harmless
    rows = [json.loads(line) for line in _lines(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["epoch"]) for r in rows] == [(1, 0), (2, 1)]
    assert rows[1]["val/dice"] == 0.75 and isinstance(rows[0]["time"], float)
    assert read_metrics(tmp_path) == rows


def test_resume_cuts_the_rows_after_the_checkpoint_and_continues(tmp_path):
    _log(tmp_path, [1, 2, 3, 4, 5])  # the first attempt got to step 5; its checkpoint is at step 3
    _log(tmp_path, [4, 5, 6], resume_step=3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]  # none missing, none twice


def test_a_fresh_start_in_an_existing_run_directory_starts_the_file_over(tmp_path):
    _log(tmp_path, [1, 2, 3])
    _log(tmp_path, [1, 2])
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_a_torn_last_line_is_dropped_quietly_and_the_next_row_starts_a_line(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    _log(tmp_path, [1, 2])
    with open(path, "a") as file:
        file.write('{"step": 3, "epoch": 0, "train/lo')  # the crash came mid-write
    with caplog.at_level(logging.WARNING, logger="frame"):
        assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
        _log(tmp_path, [3, 4], resume_step=2)
    assert "damaged" not in caplog.text  # a torn tail is what a crash leaves: no warning
    assert [json.loads(line)["step"] for line in _lines(path)] == [1, 2, 3, 4]  # every line parses again


def test_a_whole_last_row_without_its_newline_is_kept_on_its_own_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "epoch": 0, "train/loss": 1.0}\n{"step": 2, "epoch": 0, "train/loss": 0.5}')
    _log(tmp_path, [3], resume_step=2)
    assert [json.loads(line)["step"] for line in _lines(path)] == [1, 2, 3]
    assert all(line.endswith("\n") for line in _lines(path))


def test_damaged_rows_inside_the_file_are_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": true}\n{"step": 2.0}\n{"epoch": 1}\n\n{"step": 2}\n')
    with caplog.at_level(logging.WARNING, logger="frame"):
        assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    assert "dropped 3 damaged line(s) (line 2, 3, 4)" in caplog.text  # the blank line is not damage


def test_reading_a_run_without_metrics_gives_no_rows(tmp_path):
    assert read_metrics(tmp_path / "missing") == []


def test_best_is_the_first_of_the_best_values_with_its_epoch():
    rows = [
        {"epoch": 1, "val/loss": 0.5},
        {"epoch": 1, "train/loss": 0.1},
        {"epoch": 2, "val/loss": 0.3},
        {"epoch": 3, "val/loss": 0.3},
        {"epoch": 4, "val/loss": "nan?"},
        {"epoch": 5, "val/loss": 0.4},
    ]
    assert best(rows, "val/loss", maximize=False) == (0.3, 2)
    assert best(rows, "val/loss", maximize=True) == (0.5, 1)
    assert best(rows, "val/dice", maximize=True) == (None, None)


@pytest.mark.parametrize(
    "value, so_far, maximize, expected",
    [
        (0.5, None, True, True),
        (0.5, None, False, True),
        (0.6, 0.5, True, True),
        (0.4, 0.5, True, False),
        (0.5, 0.5, True, False),
        (0.4, 0.5, False, True),
        (0.6, 0.5, False, False),
        (0.5, 0.5, False, False),
    ],
)
def test_better_is_strict_and_anything_beats_nothing(value, so_far, maximize, expected):
    assert better(value, so_far, maximize) is expected


@pytest.mark.parametrize(
    "value, so_far, expected", [(float("nan"), None, False), (float("nan"), 0.5, False), (0.5, float("nan"), True)]
)
def test_nan_never_beats_anything_and_anything_beats_a_nan_best(value, so_far, expected):
    assert better(value, so_far, maximize=True) is expected and better(value, so_far, maximize=False) is expected
