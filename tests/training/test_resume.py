"""Exact resume, through real processes and real signals.

A run stopped at any moment (SIGKILL, also in the middle of a checkpoint write;
SIGTERM, SIGUSR2, SIGINT; mid-epoch and between epochs) and restarted with the
same command must end bit for bit where an uninterrupted run ends: weights,
optimizer and scheduler state, RNG states and every logged metric (wall-clock
keys aside). Shuffling, the MLP's dropout, two data-loader workers, a random
transform and a per-step LR scheduler are all on.
"""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from frame.core.exits import EXIT_ABORTED, EXIT_INTERRUPTED
from frame.training.build import build_job
from frame.training.checkpoint import load_checkpoint
from frame.training.loop import fit
from tests.conftest import REPO, start_frame


class RandomJitter:
    """Noise from torch, numpy and python's `random` at once (frame seeds all three per item and epoch).

    `delay_s` slows loading so that a test can catch a run in the middle of an epoch.
    """

    def __init__(self, std: float = 0.1, delay_s: float = 0.0):
        self.std, self.delay_s = std, delay_s

    def __call__(self, x):
        time.sleep(self.delay_s)
        x = torch.as_tensor(x)
        return x + self.std * torch.randn_like(x) + float(np.random.normal(0, self.std)) + random.uniform(0, self.std)


RUN = [
    "experiment=classify",
    "name=run",
    "data.dataset.num_samples=160",
    "data.batch_size=8",
    "data.num_workers=2",  # 16 steps per epoch
    "trainer.epochs=3",
    "trainer.device=cpu",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=3",
    "trainer.checkpoint_every_n_steps=5",  # checkpoints fall inside log windows
    "lr_scheduler=warmup",
    "lr_scheduler.total_iters=20",
]
STEPS_PER_EPOCH, STEPS = 16, 48
WALL_CLOCK = ("time", "train/epoch_time_s", "train/samples_per_s")

# Put on PYTHONPATH as sitecustomize.py: with FRAME_TEST_FSYNC_MARK set, every fsync of a checkpoint's
# temp file is announced in that file and held for a moment, so a test can kill inside a write.
SLOW_CHECKPOINT_WRITES = """
import os, time
if os.environ.get("FRAME_TEST_FSYNC_MARK"):
    _fsync = os.fsync
    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if "/checkpoints/.tmp-" in target:
            with open(os.environ["FRAME_TEST_FSYNC_MARK"], "a") as mark:
                mark.write(target + "\\n")
            time.sleep(float(os.environ.get("FRAME_TEST_FSYNC_DELAY", "0.5")))
        return _fsync(fd)
    os.fsync = fsync
"""


def _transform(delay_s: float) -> str:
    return f"data.sample_transforms=[{{_target_:tests.training.test_resume.RandomJitter,std:0.1,delay_s:{delay_s}}}]"


def _start(cwd: Path, *args: str, env=None, **popen) -> subprocess.Popen:
    """`frame train RUN args` in its own session: a signal to the group reaches the workers too, as from SLURM or Ctrl-C."""
    hooks = cwd / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SLOW_CHECKPOINT_WRITES)
    log = open(cwd / "attempts.log", "a")
    log.write(f"\n=== frame train {' '.join(args)}\n")
    log.flush()
    return start_frame(
        ["train", *RUN, *args],
        cwd,
        env={"PYTHONPATH": f"{hooks}{os.pathsep}{REPO}", **(env or {})},
        stdout=log,
        start_new_session=True,
        **popen,
    )


def _finish(proc: subprocess.Popen, cwd: Path, expected: int, timeout: float = 300) -> str:
    code = proc.wait(timeout)
    output = (cwd / "attempts.log").read_text()
    assert code == expected, f"exit {code}, expected {expected}:\n{output[-6000:]}"
    return output


def _wait_until(condition, proc: subprocess.Popen, cwd: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"frame exited ({proc.returncode}) too early:\n{(cwd / 'attempts.log').read_text()[-6000:]}"
            )
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.005)


def _last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return -1
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a line being written
            pass
    return steps[-1] if steps else -1


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK} for line in lines]


def _assert_equal(a, b, path):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {set(a) ^ set(b)} differ"
        for key in a:
            _assert_equal(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: lengths differ"
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{path}[{index}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_same_run(reference: Path, run_dir: Path) -> None:
    """Metrics, last.pt and best.pt equal bit for bit (the config text aside: it may differ in a test-only delay)."""
    assert _records(run_dir) == _records(reference)
    for name in ("last.pt", "best.pt"):
        expected, got = (
            load_checkpoint(reference / "checkpoints" / name),
            load_checkpoint(run_dir / "checkpoints" / name),
        )
        for saved in (expected, got):
            del saved["config"], saved["config_hash"]
        _assert_equal(expected, got, name)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["step"] == STEPS


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run, never interrupted."""
    cwd = tmp_path_factory.mktemp("reference")
    _finish(_start(cwd, _transform(0)), cwd, 0)
    return cwd / "outputs" / "run"


# --- in-process: fast, a real signal to this very process ----------------------------------------------


@pytest.mark.parametrize(
    "signal_at_call,stopped_at", [(6, (0, 4, 4)), (10, (1, 7, 0))], ids=["mid-epoch", "in-validation"]
)
def test_stopped_run_resumes_exactly_in_process(compose, tmp_path, signal_at_call, stopped_at):
    cfg = compose(
        [
            "experiment=classify",
            "data.dataset.num_samples=64",
            "data.batch_size=8",
            "trainer.epochs=2",
            "trainer.device=cpu",
            "trainer.log_every_n_steps=3",
            "logger=[jsonl]",
            "data.sample_transforms=[{_target_:tests.training.test_resume.RandomJitter}]",
        ]
    )
    (tmp_path / "reference").mkdir(), (tmp_path / "run").mkdir()
    fit(build_job(cfg, tmp_path / "reference"))

    job = build_job(cfg, tmp_path / "run")
    calls, loss_fn = [], job.loss_fn

    def loss_then_signal(
        prediction, target
    ):  # 1-2: the check before the first epoch, 3-9 train epoch 1, 10-11 validate it
        calls.append(1)
        if len(calls) == signal_at_call:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss_fn(prediction, target)

    job.loss_fn = loss_then_signal
    with pytest.raises(SystemExit) as stopped:
        fit(job)
    assert stopped.value.code == EXIT_INTERRUPTED
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (saved["state"]["epoch"], saved["state"]["step"], saved["state"]["batch_in_epoch"]) == stopped_at
    assert _last_step(tmp_path / "run") <= saved["state"]["step"]

    fit(build_job(cfg, tmp_path / "run"))
    assert _records(tmp_path / "run") == _records(tmp_path / "reference")
    for name in ("last.pt", "best.pt"):
        _assert_equal(
            load_checkpoint(tmp_path / "reference" / "checkpoints" / name),
            load_checkpoint(tmp_path / "run" / "checkpoints" / name),
            name,
        )


# --- real processes -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_exact(reference, tmp_path):
    """Six SIGKILLs in one run, each followed by a resume: at random steps, inside checkpoint writes, between epochs."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    run_dir, mark = tmp_path / "outputs" / "run", tmp_path / "fsync-marks"
    env = {"FRAME_TEST_FSYNC_MARK": str(mark), "FRAME_TEST_FSYNC_DELAY": "0.3"}

    def writes():
        return len(mark.read_text().splitlines()) if mark.exists() else 0

    def step():
        return _last_step(run_dir)

    def resumed(output):  # each attempt that finds a checkpoint must resume from it
        assert "resuming from" in output or not had_checkpoint, f"seed {seed}: did not resume\n{output[-4000:]}"

    def started(proc):
        """Once the attempt has resumed and cut metrics.jsonl back to its checkpoint: until then the file
        holds the killed attempt's rows, which ran on while its last checkpoint was written in the background."""
        if had_checkpoint:
            base = load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["step"]
            attempt = tmp_path / "attempts.log"
            _wait_until(
                lambda: "resuming from" in attempt.read_text().split("=== frame train")[-1] and step() <= base + 3,
                proc,
                tmp_path,
            )

    trials = ["step", "write", "step", "between-epochs", "write", "step"]
    for trial, kind in enumerate(trials):
        what = f"trial {trial} ({kind}, seed {seed})"
        had_checkpoint = (run_dir / "checkpoints" / "last.pt").exists()
        proc = _start(tmp_path, _transform(0.005), env=env)
        started(proc)
        if kind == "step":  # any moment: a random step ahead (the first trial may die before any checkpoint)
            target = rng.randrange(1, 6) if trial == 0 else min(step() + rng.randrange(2, 9), STEPS - 4)
            _wait_until(lambda: step() >= target, proc, tmp_path)
            time.sleep(rng.uniform(0, 0.1))
        elif kind == "write":  # inside the next checkpoint write: data in the temp file, not yet renamed
            target = writes() + 1 + rng.randrange(2)
            _wait_until(lambda: writes() >= target, proc, tmp_path)
        else:  # just after an epoch's checkpoints all landed (epoch-NNNN.pt first, last.pt after it)
            epoch = step() // STEPS_PER_EPOCH + 1
            landed = run_dir / "checkpoints" / f"epoch-{epoch:04d}.pt"
            _wait_until(lambda: landed.exists() and not list(landed.parent.glob(".tmp-*")), proc, tmp_path)
        os.killpg(proc.pid, signal.SIGKILL)
        resumed(_finish(proc, tmp_path, -signal.SIGKILL).split("=== frame train")[-1])
        if kind == "write":
            assert list((run_dir / "checkpoints").glob(".tmp-*")), f"{what}: the kill missed the write"
        if kind == "between-epochs":
            assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["epoch"] >= epoch, what
        last = run_dir / "checkpoints" / "last.pt"
        assert not last.exists() or load_checkpoint(last)["state"]["step"] < STEPS, f"{what}: killed after the end"

    had_checkpoint = True
    output = _finish(_start(tmp_path, _transform(0.005)), tmp_path, 0).split("=== frame train")[-1]
    resumed(output)
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    try:
        assert_same_run(reference, run_dir)
    except AssertionError as error:
        raise AssertionError(f"seed {seed}: {error}\n{output[-6000:]}") from error


@pytest.mark.slow
def test_sigusr2_sigterm_and_sigint_checkpoint_mid_epoch_and_resume_exactly(reference, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    for signum, at_step in [(signal.SIGUSR2, 5), (signal.SIGTERM, 20), (signal.SIGINT, 37)]:
        proc = _start(tmp_path, _transform(0.01))
        _wait_until(lambda: _last_step(run_dir) >= at_step, proc, tmp_path)
        os.killpg(proc.pid, signum)  # the whole group: DataLoader workers get it too and must ignore it
        output = _finish(proc, tmp_path, EXIT_INTERRUPTED)
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]
        assert state["step"] >= at_step and 0 < state["batch_in_epoch"] < STEPS_PER_EPOCH, state  # mid-epoch
        assert state["step"] == state["epoch"] * STEPS_PER_EPOCH + state["batch_in_epoch"]
        assert f"stopped by {signal.Signals(signum).name} at epoch {state['epoch']}, step {state['step']}" in output
        assert "Traceback" not in output
        assert _last_step(run_dir) <= state["step"]
    _finish(_start(tmp_path, _transform(0.01)), tmp_path, 0)
    assert_same_run(reference, run_dir)


@pytest.mark.slow
def test_second_sigint_exits_at_once_and_corrupts_nothing(reference, tmp_path):
    run_dir, mark = tmp_path / "outputs" / "run", tmp_path / "fsync-marks"

    def writes():
        return len(mark.read_text().splitlines()) if mark.exists() else 0

    proc = _start(tmp_path, _transform(0.01), env={"FRAME_TEST_FSYNC_MARK": str(mark), "FRAME_TEST_FSYNC_DELAY": "5"})
    _wait_until(lambda: _last_step(run_dir) >= 6 and writes() >= 1, proc, tmp_path)
    before = writes()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the loop starts its checkpoint write at the step's end...
    _wait_until(lambda: writes() > before, proc, tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # ...and Ctrl-C again lands inside it
    start = time.monotonic()
    output = _finish(proc, tmp_path, EXIT_ABORTED)
    assert time.monotonic() - start < 3  # at once, not after the 5 s write
    assert "second SIGINT: exiting now" in output
    assert list((run_dir / "checkpoints").glob(".tmp-*"))
    load_checkpoint(run_dir / "checkpoints" / "last.pt")  # the previous one, whole

    _finish(_start(tmp_path, _transform(0.01)), tmp_path, 0)
    assert_same_run(reference, run_dir)
