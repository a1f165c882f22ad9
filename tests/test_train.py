"""`frame train` end to end in a subprocess, as a user runs it; the task's handling of the garbage collector."""

import gc
import json
import weakref

from frame.train import long_lived_objects_out_of_gc
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


def test_the_collector_is_off_while_building_then_skips_what_was_built_until_training_ends():
    class Cycle:
        def __init__(self):
            self.me = self

    with long_lived_objects_out_of_gc() as built:
        assert not gc.isenabled()
        built()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gone = weakref.ref(Cycle())
        gc.collect()
        assert gone() is None  # objects made after the freeze are collected as usual
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_cycle_left_by_a_run_can_be_freed_after_it_and_a_disabled_collector_stays_disabled():
    class Cycle:
        def __init__(self):
            self.me = self

    gc.disable()
    try:
        with long_lived_objects_out_of_gc() as built:
            left = weakref.ref(Cycle())  # unreachable, but the collector is off: it survives into the freeze
            built()
            gc.collect()
            assert left() is not None  # frozen out of the collector's reach while training
            assert not gc.isenabled()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
        gc.collect()
        assert left() is None
    finally:
        gc.enable()


def test_objects_frozen_by_someone_else_stay_frozen():
    gc.freeze()
    try:
        count = gc.get_freeze_count()
        with long_lived_objects_out_of_gc() as built:
            built()
        assert gc.get_freeze_count() == count
    finally:
        gc.unfreeze()
