"""frame.core.state_files: what frame reads back never blocks, damage is named, and a damaged run.json
or sweep.json about to be rewritten is kept beside, not lost."""

import json
import logging
import time

import pytest

from frame.core import run_record
from frame.core.errors import FrameError
from frame.core.state_files import DamagedFile, holds_run, read_bytes, read_object, read_or_keep_aside
from tests.faults import fifo


def test_a_fifo_or_a_directory_is_refused_at_once_never_read(tmp_path):
    started = time.monotonic()
    with pytest.raises(DamagedFile, match="run.json is a FIFO where frame keeps a file; move it away"):
        read_bytes(fifo(tmp_path / "run.json"))
    assert time.monotonic() - started < 5  # a plain open() would wait for a writer forever
    (tmp_path / "sweep.json").mkdir()
    with pytest.raises(DamagedFile, match="sweep.json is a directory"):
        read_object(tmp_path / "sweep.json")
    assert read_bytes(tmp_path / "missing") is None


@pytest.mark.parametrize(
    "content, why",
    [
        (b'{"status": "complete"\xff}', "invalid UTF-8 at byte 21"),
        (b'{"status": "compl', "Unterminated string"),
        (b"\x00\x01garbage", "Expecting value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b"[1, 2]", "a JSON list, not an object"),
    ],
)
def test_damage_is_named_with_the_file(tmp_path, content, why):
    (tmp_path / "run.json").write_bytes(content)
    with pytest.raises(DamagedFile, match=f"run.json is damaged: .*{why}"):
        read_object(tmp_path / "run.json")


def test_a_run_json_with_one_stray_byte_is_kept_beside_with_its_wandb_id_and_attempts(tmp_path, caplog):
    good = {"status": "complete", "wandb_id": "k3j9x0a1", "attempts": [{"status": "complete"}]}
    damaged = json.dumps(good).encode().replace(b'"status"', b'"st\xfftus"', 1)
    (tmp_path / "run.json").write_bytes(damaged)
    with caplog.at_level(logging.WARNING, "frame"):
        record = run_record.update(tmp_path, heartbeat=1.0)
    assert record == {"heartbeat": 1.0}
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.json.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # nothing lost
    assert f"kept it as {aside[0].name}" in caplog.text and "invalid UTF-8" in caplog.text
    assert json.loads((tmp_path / "run.json").read_text()) == {"heartbeat": 1.0}


def test_a_fifo_in_place_of_run_json_refuses_the_attempt_and_is_left_alone(tmp_path):
    fifo(tmp_path / "run.json")
    with pytest.raises(FrameError, match="run.json is a FIFO"):
        with run_record.RunRecord(tmp_path, heartbeat_s=0, enabled=True):
            pass
    assert (tmp_path / "run.json").is_fifo()
    assert run_record.read(tmp_path) == {} and "FIFO" in run_record.damage(tmp_path)


def test_read_or_keep_aside_leaves_a_directory_where_it_is(tmp_path):
    (tmp_path / "run.json").mkdir()
    with pytest.raises(DamagedFile, match="is a directory"):
        read_or_keep_aside(tmp_path / "run.json")
    assert (tmp_path / "run.json").is_dir()


@pytest.mark.parametrize(
    "made, holds",
    [
        ((), False),
        (("run.json",), True),
        (("metrics.jsonl",), True),
        (("checkpoints/",), True),
        ((".hydra/", "train.log"), False),
    ],
)
def test_one_rule_says_which_folder_holds_a_run(tmp_path, made, holds):
    for name in made:
        (tmp_path / name).mkdir() if name.endswith("/") else (tmp_path / name).write_text("")
    assert holds_run(tmp_path) is holds


def test_a_fifo_in_place_of_the_lock_is_named_not_waited_on(tmp_path):
    from frame.core.run_lock import RunLock

    fifo(tmp_path / ".lock")
    started = time.monotonic()
    with pytest.raises(DamagedFile, match=r"\.lock is a FIFO"):
        RunLock(tmp_path, heartbeat_s=0).acquire()
    assert time.monotonic() - started < 5 and (tmp_path / ".lock").is_fifo()
