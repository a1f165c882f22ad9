import json

import pytest

from frame.config.rundir import check_member_dir, claim, holds_run, lost_history
from frame.core.errors import FrameError


def _make_run(directory):
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "checkpoints" / "last.pt").write_bytes(b"x")


def test_empty_or_missing_directory_is_free(tmp_path):
    claim(tmp_path / "new", resume=False, fresh=False)
    (tmp_path / "empty" / ".hydra").mkdir(parents=True)
    assert not holds_run(tmp_path / "empty")


def test_refuses_without_resume_and_keeps_files(tmp_path):
    run = tmp_path / "run"
    _make_run(run)
    with pytest.raises(FrameError, match="fresh=true"):
        claim(run, resume=False, fresh=False)
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"x"
    claim(run, resume=True, fresh=False)  # continuing is allowed


def test_fresh_moves_the_run_aside(tmp_path):
    run = tmp_path / "run"
    _make_run(run)
    claim(run, resume=True, fresh=True)
    assert not run.exists()
    (moved,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert (moved / "checkpoints" / "last.pt").read_bytes() == b"x"


def test_a_sweep_with_a_summary_or_member_metrics_holds_a_run(tmp_path):
    (tmp_path / "a" / "lr=0.1").mkdir(parents=True)
    (tmp_path / "a" / "lr=0.1" / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "sweep.json").write_text("{}")
    assert holds_run(tmp_path / "a") and holds_run(tmp_path / "b")


def test_fresh_that_cannot_move_the_run_aside_is_refused_not_resumed(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    run = tmp_path / "run"
    _make_run(run)

    def refuse(self, target):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(FrameError, match="cannot move the earlier run .* aside"):
        claim(run, resume=True, fresh=True)
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"x"


def test_a_live_lock_is_refused_whatever_the_flags(tmp_path):
    from frame.core.run_lock import RunLock, RunLocked

    with RunLock(tmp_path / "run", heartbeat_s=0):
        for flags in ({"resume": True, "fresh": False}, {"resume": False, "fresh": True}):
            with pytest.raises(RunLocked, match="in use by pid"):
                claim(tmp_path / "run", **flags)


def test_member_directories_stay_inside_the_sweep(tmp_path):
    sweep = tmp_path / "outputs" / "s"
    check_member_dir(sweep / "optimizer.lr=0.1", sweep, ["optimizer.lr=0.1"])
    check_member_dir(sweep / "data.root=/data/x", sweep, ["data.root=/data/x"])  # nested, still inside
    for subdir in ["trainer.monitor=x/../../..", "..", "a=/../../../etc"]:
        with pytest.raises(FrameError, match="outside its sweep"):
            check_member_dir(sweep / subdir, sweep, [subdir])


def test_an_overlong_name_is_a_user_error(tmp_path):
    with pytest.raises(FrameError, match="300 bytes long"):
        claim(tmp_path / ("a" * 300), resume=True, fresh=False)


def test_history_without_checkpoints_is_found(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 3, "epoch": 0}\n{"step": 3, "epoch": 1, "val/loss": 0.5}\n')
    assert "metrics.jsonl logged 1 epoch(s)" in lost_history(run)
    (run / "checkpoints").write_text("not a directory")
    assert "is a file" in lost_history(run)
    (run / "checkpoints").unlink()
    _make_run(run)
    assert lost_history(run) is None
    fresh = tmp_path / "killed-in-epoch-1"
    fresh.mkdir()
    (fresh / "metrics.jsonl").write_text('{"step": 1, "epoch": 0, "train/loss": 1.0}\n')
    assert lost_history(fresh) is None  # nothing finished: starting again loses nothing


@pytest.mark.parametrize("sweep, found", [(False, "sweep.json"), (False, "multirun.yaml"), (True, "run.json")])
def test_a_single_run_and_a_sweep_never_share_a_directory(tmp_path, sweep, found):
    (tmp_path / found).write_text("{}")
    for fresh in (False, True):  # fresh=true must not move the other kind aside either
        with pytest.raises(FrameError, match="holds a (sweep|single run)"):
            claim(tmp_path, resume=True, fresh=fresh, sweep=sweep)
    assert (tmp_path / found).is_file()


def test_overrides_that_change_the_result_name_the_run_and_others_keep_it():
    from frame.config.rundir import run_suffix

    assert run_suffix([]) == ""
    assert (
        run_suffix(
            [
                "resume=true",
                "fresh=true",
                "logger=[jsonl]",
                "data.num_workers=4",
                "trainer.device=cpu",
                "local@_global_=other",
                "hydra.job.chdir=false",
                "logger.wandb.project=x",
            ]
        )
        == ""
    )
    assert run_suffix(["trainer.epochs=5"]) == "+trainer.epochs=5"
    # the order of the overrides does not matter; how-to-run keys among them do not count
    assert (
        run_suffix(["trainer.epochs=10", "optimizer.lr=1e-4", "resume=true"])
        == run_suffix(["optimizer.lr=1e-4", "trainer.epochs=10"])
        == "+optimizer.lr=1e-4,trainer.epochs=10"
    )
    assert run_suffix(["+model.dropout=0.2"]) == "++model.dropout=0.2"
    assert run_suffix(["name=mine", "optimizer.lr=1e-4"]) == ""  # name= names the directory itself


def test_a_long_or_slashed_suffix_is_one_safe_name_and_two_stay_apart():
    from frame.config.rundir import LONGEST_SUFFIX, run_suffix

    assert "/" not in run_suffix(["data.dataset.root=/data/ct"])
    long_a = run_suffix([f"model.channels=[{','.join(['16'] * 40)}]", "seed=1"])
    long_b = run_suffix([f"model.channels=[{','.join(['16'] * 40)}]", "seed=2"])
    assert long_a != long_b and len(long_a.encode()) <= LONGEST_SUFFIX + 1
    assert long_a == run_suffix([f"model.channels=[{','.join(['16'] * 40)}]", "seed=1"])


@pytest.mark.slow
def test_a_sweep_is_named_by_the_overrides_it_fixes_as_a_single_run_is(tmp_path):
    """`-m optimizer.lr=0.1,0.01 trainer.epochs=1` and `... trainer.epochs=2` are two sweeps in directories of
    their own; the same command again finds its sweep; `name=` and an explicit hydra.sweep.dir keep theirs."""
    from tests.conftest import run_frame

    sweep = [
        "train",
        "-m",
        "experiment=classify",
        "logger=[jsonl]",
        "data.dataset.num_samples=16",
        "optimizer.lr=0.1,0.01",
    ]
    outputs = tmp_path / "outputs"
    for epochs in (1, 2, 1):
        done = run_frame([*sweep, f"trainer.epochs={epochs}"], tmp_path, check=0)
    assert sorted(p.name for p in outputs.iterdir()) == [
        "classify-sweep+data.dataset.num_samples=16,trainer.epochs=1",
        "classify-sweep+data.dataset.num_samples=16,trainer.epochs=2",
    ]
    assert "complete (earlier)" in done.stdout  # the same command found its finished members
    members = json.loads(
        (outputs / "classify-sweep+data.dataset.num_samples=16,trainer.epochs=2" / "sweep.json").read_text()
    )
    assert sorted(m["run_dir"] for m in members["members"]) == ["optimizer.lr=0.01", "optimizer.lr=0.1"]
    run_frame([*sweep, "trainer.epochs=1", "name=mine"], tmp_path, check=0)
    run_frame([*sweep, "trainer.epochs=1", "hydra.sweep.dir=elsewhere"], tmp_path, check=0)
    assert (outputs / "mine-sweep" / "sweep.json").is_file() and (tmp_path / "elsewhere" / "sweep.json").is_file()
