"""Checkpoint files: atomic writes, verified and safe loads, fallback past broken files."""

import contextlib
import logging
import os
import pickle
import resource
import shutil
import subprocess

import pytest
import torch

from frame.training.checkpoint import FORMAT, CheckpointError, Checkpoints, atomic_write, load_checkpoint
from tests.conftest import REPO, metrics, run_frame


def _state(step=1, epoch=0, value=0.0):
    """The smallest dict `load_checkpoint` accepts as a frame checkpoint."""
    return {
        "format": FORMAT,
        "state": {"epoch": epoch, "step": step},
        "counters": {},
        "data": {},
        "model": {"w": torch.full((64,), value)},
        "optimizer": {},
        "optimizer_class": "torch.optim.adam.Adam",
        "scheduler": None,
        "scheduler_class": None,
        "scaler": {},
        "rng": {},
        "config": "",
    }


class CreatesFile:
    """Unpickling this runs `open(path, 'w')`: what a planted checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    atomic_write(target, lambda file: file.write(b"new"), also=[tmp_path / "best.pt"])
    assert target.read_bytes() == b"new" and (tmp_path / "best.pt").read_bytes() == b"new"
    assert os.stat(target).st_ino == os.stat(tmp_path / "best.pt").st_ino  # a hard link, not a second copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_without_hard_links_the_other_names_get_copies(tmp_path, monkeypatch):
    def refuse(source, target):  # what a filesystem without hard links answers
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    atomic_write(tmp_path / "last.pt", lambda file: file.write(b"new"), also=[tmp_path / "best.pt"])
    assert (tmp_path / "best.pt").read_bytes() == b"new"
    assert os.stat(tmp_path / "last.pt").st_ino != os.stat(tmp_path / "best.pt").st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_links_keep_their_content_when_last_pt_is_replaced(tmp_path):
    checkpoints = Checkpoints(tmp_path, every_n_epochs=1, keep_last=2)
    checkpoints.save(_state(epoch=1, value=1.0), best=True, epoch_end=True)
    checkpoints.wait()
    files = checkpoints.dir
    assert (
        os.stat(files / "best.pt").st_ino
        == os.stat(files / "last.pt").st_ino
        == os.stat(files / "epoch-0001.pt").st_ino
    )
    checkpoints.save(_state(epoch=2, value=2.0), epoch_end=True)
    checkpoints.wait()
    assert load_checkpoint(files / "last.pt")["model"]["w"][0] == 2.0
    assert load_checkpoint(files / "best.pt")["model"]["w"][0] == 1.0
    assert load_checkpoint(files / "epoch-0001.pt")["model"]["w"][0] == 1.0


def test_save_copies_the_state_so_training_can_change_it_while_the_file_is_written(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    state = _state(value=1.0)
    state["model"]["tied"] = state["model"]["w"]
    checkpoints.save(state)
    state["model"]["w"].fill_(7.0)  # the next optimizer step, in place
    state["state"]["step"] = 99
    checkpoints.wait()
    saved = load_checkpoint(checkpoints.dir / "last.pt")
    assert saved["model"]["w"].eq(1.0).all() and saved["state"]["step"] == 1
    assert saved["model"]["tied"].data_ptr() == saved["model"]["w"].data_ptr()  # still one tensor in the file


def test_a_failed_background_write_is_raised_at_the_next_save_or_wait(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    (checkpoints.dir / "last.pt").mkdir(parents=True)  # renaming the written file onto it fails
    checkpoints.save(_state(step=1))  # returns: the write runs in the background
    with pytest.raises(CheckpointError, match="could not write checkpoint .*last.pt.*intact"):
        checkpoints.save(_state(step=2))
    checkpoints.wait()  # that error was raised once; the second save did not start a write
    checkpoints.save(_state(step=3))
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        checkpoints.wait()
    assert [p.name for p in checkpoints.dir.iterdir()] == ["last.pt"]  # no temp file left


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def fails_halfway(file):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="No space left on device.*intact"):
        atomic_write(target, fails_halfway, also=[tmp_path / "best.pt"])
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_save_names_best_and_periodic_files_and_prunes_by_epoch_number(tmp_path):
    checkpoints = Checkpoints(tmp_path, every_n_epochs=1, keep_last=2)
    for epoch in (9998, 9999, 10000):
        checkpoints.save(_state(epoch=epoch), best=epoch == 9999, epoch_end=True)
    checkpoints.wait()
    names = sorted(p.name for p in checkpoints.dir.iterdir())
    assert names == ["best.pt", "epoch-10000.pt", "epoch-9999.pt", "last.pt"]
    assert load_checkpoint(checkpoints.dir / "best.pt")["state"]["epoch"] == 9999
    assert [p.name for p in checkpoints._candidates()] == ["last.pt", "epoch-10000.pt", "epoch-9999.pt", "best.pt"]


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "last.pt"
    torch.save(_state(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_flipped_byte_inside_a_tensor_is_detected(tmp_path):
    """torch.load alone would load the wrong number silently; the zip CRCs catch it."""
    path = tmp_path / "last.pt"
    torch.save(_state(value=1.0), path)
    data = bytearray(path.read_bytes())
    offset = data.find(torch.full((64,), 1.0).numpy().tobytes())
    data[offset + 5] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_checkpoint(path)


def test_a_dict_that_is_not_a_frame_checkpoint_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a frame checkpoint: it lacks format"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({**_state(), "format": FORMAT + 1}, tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="newer than this frame reads"):
        load_checkpoint(tmp_path / "y.pt")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_planted_pickle_is_refused_and_never_runs(tmp_path, writer):
    planted = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    payload = {**_state(), "model": CreatesFile(planted)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="not plain data.*refusing to load it"):
        load_checkpoint(path)
    assert not planted.exists()


def test_load_latest_falls_back_with_a_warning_and_cleans_temp_files(tmp_path, caplog):
    checkpoints = Checkpoints(tmp_path, every_n_epochs=1, keep_last=3)
    checkpoints.save(_state(step=10, epoch=1), best=True, epoch_end=True)
    checkpoints.save(_state(step=20, epoch=2), epoch_end=True)
    checkpoints.wait()
    (checkpoints.dir / "last.pt").write_bytes(b"PK\x03\x04 torn")
    (checkpoints.dir / ".tmp-last.pt.12345").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING):
        saved = checkpoints.load_latest()
    # damage in place reaches every name of that save (epoch-0002.pt is a link to the same file), not older ones
    assert saved["state"]["step"] == 10 and saved["_path"].endswith("epoch-0001.pt")
    assert "last.pt is unreadable" in caplog.text and "epoch-0002.pt is unreadable" in caplog.text
    assert "resuming from the older epoch-0001.pt" in caplog.text
    assert not list(checkpoints.dir.glob(".tmp-*"))


def test_load_latest_refuses_to_start_over_when_nothing_is_valid(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.load_latest() is None  # a new run
    checkpoints.dir.mkdir()
    (checkpoints.dir / "last.pt").write_bytes(b"")
    (checkpoints.dir / "best.pt").write_bytes(pickle.dumps(CreatesFile(tmp_path / "pwned"), protocol=2))
    with pytest.raises(CheckpointError, match="no valid checkpoint to resume from") as error:
        checkpoints.load_latest()
    assert "last.pt" in str(error.value) and "best.pt" in str(error.value) and "fresh=true" in str(error.value)
    assert not (tmp_path / "pwned").exists()


# --- real processes: what a user sees -------------------------------------------------------------------

SMALL = [
    "experiment=classify",
    "name=run",
    "data.dataset.num_samples=64",
    "data.batch_size=8",  # 7 steps per epoch
    "trainer.device=cpu",
    "logger=[jsonl]",
]


def _frame(cwd, *args, check=None, **popen):
    """`frame train SMALL args`; PYTHONPATH lets it import test components (tests.training.test_loop.NanOnSteps)."""
    result = run_frame(["train", *SMALL, *args], cwd, env={"PYTHONPATH": str(REPO)}, check=check, **popen)
    result.output = result.stdout + result.stderr
    return result


def _files(directory):
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A finished one-epoch run; tests copy it (`outputs/run`) instead of training again."""
    cwd = tmp_path_factory.mktemp("one_epoch")
    _frame(cwd, "trainer.epochs=1", check=0)
    return cwd / "outputs"


@pytest.mark.slow
def test_broken_last_pt_falls_back_and_with_none_valid_the_run_stops(tmp_path):
    _frame(tmp_path, "trainer.epochs=2", check=0)
    checkpoints = tmp_path / "outputs" / "run" / "checkpoints"
    last = checkpoints / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated in place: epoch-0002.pt, a link to it, too

    more = _frame(tmp_path, "trainer.epochs=3", check=0)
    assert "last.pt is unreadable (truncated or corrupted)" in more.output
    assert "resuming from the older epoch-0001.pt (step 7) instead" in more.output
    records = metrics(checkpoints.parent)
    assert [r["epoch"] for r in records if "val/loss" in r] == [1, 2, 3]

    planted = tmp_path / "pwned"
    for path in checkpoints.glob("*.pt"):
        path.write_bytes(b"")
    torch.save({**_state(), "model": CreatesFile(planted)}, last)
    stopped = _frame(tmp_path, "trainer.epochs=4")
    assert stopped.returncode == 2, stopped.output
    assert "no valid checkpoint to resume from" in stopped.stderr and "not plain data" in stopped.stderr
    assert "fresh=true" in stopped.stderr and "Traceback" not in stopped.output
    assert not planted.exists()


@pytest.mark.slow
def test_nan_steps_are_skipped_then_the_run_stops_with_its_last_good_checkpoint(tmp_path):
    # NanOnSteps counts training steps (7 an epoch): 8-10 are the first three of epoch 2
    result = _frame(
        tmp_path,
        "trainer.epochs=3",
        "trainer.max_bad_steps=3",
        "loss._target_=tests.training.test_loop.NanOnSteps",
        "+loss.steps=[8,9,10]",
    )
    assert result.returncode == 2, result.output
    assert "step 8: non-finite loss or gradient, optimizer step skipped" in result.output
    assert "3 consecutive steps up to step 10 had a non-finite loss" in result.stderr
    assert "The last good checkpoint, " in result.stderr and "last.pt, is kept" in result.stderr
    saved = load_checkpoint(tmp_path / "outputs" / "run" / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 7 and all(torch.isfinite(w).all() for w in saved["model"].values())


@contextlib.contextmanager
def _read_only(directory):
    """chmod for a normal user; root ignores modes, so a read-only bind mount (skip where that is not allowed)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot bind-mount: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@contextlib.contextmanager
def _small_tmpfs(directory, size):
    """`directory` on a tmpfs of `size` bytes holding copies of its files (skip where mounting is not allowed)."""
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        shutil.copy(aside / "last.pt", directory / "last.pt")
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("trouble", ["read-only", "file-size-limit", "full-tmpfs"])
def test_disk_trouble_fails_loudly_and_keeps_the_previous_checkpoint(one_epoch, tmp_path, trouble):
    shutil.copytree(one_epoch, tmp_path / "outputs")
    checkpoints = tmp_path / "outputs" / "run" / "checkpoints"
    size = (checkpoints / "last.pt").stat().st_size
    if trouble == "read-only":
        with _read_only(checkpoints):
            before = _files(checkpoints)
            result = _frame(tmp_path, "trainer.epochs=2")
            after = _files(checkpoints)
        # refused before the run starts: Hydra would write .hydra/ and train.log first (frame.config.rundir)
        message = (
            f"{checkpoints} is not writable ("
            f"{'a read-only file system' if os.geteuid() == 0 else 'permission denied'}): "
        )
    elif trouble == "file-size-limit":  # RLIMIT_FSIZE: a write past the limit fails with EFBIG
        before = _files(checkpoints)
        limit = size // 2
        result = _frame(
            tmp_path, "trainer.epochs=2", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        )
        after = _files(checkpoints)
        message = f"could not write checkpoint {checkpoints / 'last.pt'}: File too large"
    else:
        with _small_tmpfs(checkpoints, size + 16384):
            before = _files(checkpoints)
            result = _frame(tmp_path, "trainer.epochs=2")
            after = _files(checkpoints)
        message = f"could not write checkpoint {checkpoints / 'last.pt'}: No space left on device"
    assert result.returncode == 2, result.output
    assert message in result.stderr, result.stderr
    assert (
        "previous checkpoints" in result.stderr and "are intact" in result.stderr
    ) or "nothing was changed" in result.stderr
    assert "Traceback" not in result.output
    assert after == before  # nothing lost, no temp file left


def test_fit_returns_only_once_its_last_checkpoint_is_whole(compose, tmp_path, monkeypatch):
    """The write runs in the background; a slow disk must not let the process exit before it ends."""
    import time

    from frame.training.build import build_job
    from frame.training.loop import fit

    save = torch.save

    def slow_save(state, file):
        time.sleep(0.5)
        save(state, file)

    job = build_job(compose([*SMALL[:5], "trainer.epochs=1"]), tmp_path)
    monkeypatch.setattr(torch, "save", slow_save)
    fit(job)
    files = job.checkpoints.dir
    assert sorted(p.name for p in files.iterdir()) == ["best.pt", "epoch-0001.pt", "last.pt"]
    assert load_checkpoint(files / "last.pt")["state"]["epoch"] == 1


def test_due_follows_the_time_interval_and_the_epoch_cadence(tmp_path):
    every_epoch = Checkpoints(tmp_path, every_n_epochs=0)
    assert every_epoch.due(epoch_end=3) and not every_epoch.due()  # no interval: after every epoch, never mid-epoch
    hourly = Checkpoints(tmp_path, every_n_epochs=2, every_n_minutes=60)
    assert hourly.due(epoch_end=2) and not hourly.due(epoch_end=3) and not hourly.due()
    tiny = Checkpoints(tmp_path, every_n_epochs=0, every_n_minutes=1e-9)
    assert tiny.due() and tiny.due(epoch_end=3)


def _saves(compose, tmp_path, monkeypatch, *overrides):
    """fit() on SMALL (7 steps an epoch) with `overrides`: (step, best) of every checkpoint it wrote, and its job."""
    from frame.training.build import build_job
    from frame.training.loop import fit

    saves, save = [], Checkpoints.save

    def recording_save(self, state, *, best=False, epoch_end=False):
        saves.append((state["state"]["step"], best))
        save(self, state, best=best, epoch_end=epoch_end)

    monkeypatch.setattr(Checkpoints, "save", recording_save)
    job = build_job(compose([*SMALL[:5], *overrides]), tmp_path)
    fit(job)
    return saves, job


def test_a_time_interval_writes_last_pt_mid_epoch(compose, tmp_path, monkeypatch):
    saves, job = _saves(compose, tmp_path, monkeypatch, "trainer.epochs=1", "trainer.checkpoint_every_n_minutes=1e-9")
    assert [step for step, _ in saves] == [1, 2, 3, 4, 5, 6, 7]  # due at every step's end, then the epoch's
    assert load_checkpoint(job.checkpoints.dir / "last.pt")["state"]["step"] == 7


def test_with_a_long_interval_an_epoch_writes_only_when_best_or_last(compose, tmp_path, monkeypatch):
    overrides = ["trainer.epochs=4", "trainer.checkpoint_every_n_minutes=60", "trainer.checkpoint_every_n_epochs=0"]
    saves, job = _saves(
        compose, tmp_path, monkeypatch, *overrides, "trainer.monitor=val/loss", "trainer.monitor_mode=max"
    )
    losses = [r["val/loss"] for r in metrics(job.run_dir) if "val/loss" in r]
    improved = [i for i, loss in enumerate(losses) if loss > max(losses[:i], default=-float("inf"))]
    expected = sorted({*improved, 3})  # the best epochs and the last one
    assert saves == [(7 * (epoch + 1), epoch in improved) for epoch in expected]
    assert load_checkpoint(job.checkpoints.dir / "last.pt")["state"]["epoch"] == 4
