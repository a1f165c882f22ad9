"""The training loop, in-process on tiny configs."""

import math

import pytest
import torch
from torch import nn

from frame.core.errors import FrameError
from frame.training.build import build_job
from frame.training.loop import NonFiniteError, fit
from tests.conftest import TINY, metrics


class NanOnSteps(nn.Module):
    """Cross-entropy that returns NaN on the listed (1-based) training steps."""

    calls = 0

    def __init__(self, steps):
        super().__init__()
        self.steps = set(steps)
        NanOnSteps.calls = (
            -1
        )  # call 0: the training batch of the check before the first epoch (frame.training.first_batch)

    def forward(self, prediction, target):
        NanOnSteps.calls += torch.is_grad_enabled()  # training calls only: validation runs without gradients
        loss = nn.functional.cross_entropy(prediction, target)
        return loss * math.nan if NanOnSteps.calls in self.steps else loss


def _records(run_dir):
    return metrics(run_dir)


def _classify(compose, *overrides):
    return compose(
        [
            "experiment=classify",
            "data.dataset.num_samples=64",
            "data.batch_size=8",
            "trainer.epochs=2",
            "trainer.log_every_n_steps=1",
            *overrides,
        ]
    )


def test_loss_falls_and_checkpoints_are_written(compose, tmp_path):
    cfg = _classify(compose, "trainer.epochs=4", "optimizer.lr=1e-2")
    best = fit(build_job(cfg, tmp_path))
    records = _records(tmp_path)
    train_losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert train_losses[-1] < train_losses[0]
    assert best == max(r["val/accuracy"] for r in records if "val/accuracy" in r)
    assert {"last.pt", "best.pt"} <= {p.name for p in (tmp_path / "checkpoints").iterdir()}


def test_bf16_autocast_on_cpu(compose, tmp_path):
    cfg = compose([*TINY, "trainer.precision=bf16", "trainer.epochs=1"])
    job = build_job(cfg, tmp_path)
    seen = []
    job.model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    fit(job)
    assert torch.bfloat16 in seen


def test_injected_nan_is_skipped_and_counted(compose, tmp_path):
    cfg = _classify(compose, "trainer.epochs=1")
    cfg.loss = {"_target_": "tests.training.test_loop.NanOnSteps", "steps": [2]}
    job = build_job(cfg, tmp_path)
    weights_after = {}
    original_step = job.optimizer.step

    def spy(*args, **kwargs):
        weights_after[NanOnSteps.calls] = True
        return original_step(*args, **kwargs)

    job.optimizer.step = spy
    fit(job)
    assert 2 not in weights_after and 1 in weights_after and 3 in weights_after
    assert all(torch.isfinite(p).all() for p in job.model.parameters())
    assert _records(tmp_path)[-2]["train/bad_steps"] == 1


def test_too_many_consecutive_nans_stop_the_run(compose, tmp_path):
    cfg = _classify(compose, "trainer.epochs=1", "trainer.max_bad_steps=3")
    cfg.loss = {"_target_": "tests.training.test_loop.NanOnSteps", "steps": [2, 3, 4, 5]}
    with pytest.raises(NonFiniteError, match="step 4") as error:
        fit(build_job(cfg, tmp_path))
    assert "No checkpoint had been written" in str(error.value) and not (tmp_path / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("scheduler", ["cosine", "multistep", "plateau", "warmup"])
def test_each_scheduler_steps(compose, tmp_path, scheduler):
    overrides = ["lr_scheduler.milestones=[1]"] if scheduler == "multistep" else []
    overrides += ["lr_scheduler.total_iters=4"] if scheduler == "warmup" else []
    overrides += (
        ["lr_scheduler.patience=0", "lr_scheduler.factor=0.1", "optimizer.lr=1e-6"] if scheduler == "plateau" else []
    )
    cfg = _classify(compose, f"lr_scheduler={scheduler}", "trainer.epochs=3", *overrides)
    job = build_job(cfg, tmp_path)
    initial = job.optimizer.param_groups[0]["lr"]
    fit(job)
    assert job.optimizer.param_groups[0]["lr"] != initial
    if scheduler == "plateau":  # fed the monitored metric: with lr ~0 accuracy cannot improve
        assert job.optimizer.param_groups[0]["lr"] < initial


@pytest.mark.parametrize("interval, steps", [("step", 6), ("epoch", 1)])
def test_a_scheduler_steps_at_its_interval(compose, tmp_path, interval, steps):
    """`lr_scheduler.interval` (frame's key in the scheduler's node): after one epoch of 6 batches the
    warm-up has moved 6 steps, or 1 per epoch."""
    cfg = _classify(
        compose,
        "lr_scheduler=warmup",
        "lr_scheduler.total_iters=10",
        f"lr_scheduler.interval={interval}",
        "trainer.epochs=1",
        "data.dataset.num_samples=60",
        "data.split_ratio=0.8",
    )
    job = build_job(cfg, tmp_path)
    base = job.optimizer.param_groups[0]["initial_lr"]
    fit(job)
    assert len(job.train_loader) == 6
    assert job.optimizer.param_groups[0]["lr"] == pytest.approx(base * (0.1 + 0.9 * steps / 10))


@pytest.mark.parametrize("limits, batches", [((None, None), (6, 2)), ((2, 1), (2, 1))])
def test_limit_batches_end_each_epoch_early(compose, tmp_path, limits, batches):
    cfg = _classify(
        compose,
        f"trainer.limit_train_batches={limits[0] or 'null'}",
        f"trainer.limit_val_batches={limits[1] or 'null'}",
        "data.dataset.num_samples=60",
    )
    job = build_job(cfg, tmp_path)
    fit(job)
    assert (len(job.train_loader), len(job.val_loader)) == batches
    assert [r["step"] for r in _records(tmp_path) if "val/loss" in r] == [batches[0], 2 * batches[0]]


def test_overfit_batches_train_and_validate_on_the_same_items(compose, tmp_path):
    cfg = _classify(compose, "trainer.overfit_batches=2", "trainer.epochs=25", "optimizer.lr=3e-2", "model.dropout=0")
    job = build_job(cfg, tmp_path)
    train, val = job.train_loader.dataset, job.val_loader.dataset
    assert train.indices == val.indices and len(train.indices) == 2 * cfg.data.batch_size
    assert list(job.train_sampler) == [(0, i) for i in range(16)]  # unshuffled
    fit(job)
    losses = [r["val/loss"] for r in _records(tmp_path) if "val/loss" in r]
    assert losses[-1] < 0.1 * losses[0]  # it learns its 16 items by heart


def test_gradient_clipping_bounds_the_update(compose, tmp_path):
    cfg = _classify(compose, "trainer.grad_norm_clip=1e-3", "optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=1.0")
    job = build_job(cfg, tmp_path)
    before = torch.cat([p.detach().flatten().clone() for p in job.model.parameters()])
    job.cfg.trainer.epochs = 1
    fit(job)
    after = torch.cat([p.detach().flatten() for p in job.model.parameters()])
    steps = len(job.train_loader)
    assert (after - before).norm() <= 1e-3 * steps * 1.0001


# --- accumulate_grad_batches, compile, channels_last, the no-sync bad-step path ------------------------

EXACT = [
    "experiment=classify",
    "data.dataset.num_samples=80",
    "model.dropout=0",
    "trainer.epochs=2",
    "trainer.log_every_n_steps=1",
    "logger=[jsonl]",
    "trainer.device=cpu",
]  # 64 training items, no dropout


def _weights(job):
    return {name: tensor.detach().clone() for name, tensor in job.model.state_dict().items()}


@pytest.mark.parametrize("accumulate", [2, 3])  # 3: 8 batches make steps of 3, 3 and a ragged 2
def test_accumulated_batches_equal_one_larger_batch(compose, tmp_path, accumulate):
    (tmp_path / "large").mkdir(), (tmp_path / "micro").mkdir()
    large = build_job(compose([*EXACT, f"data.batch_size={8 * accumulate}"]), tmp_path / "large")
    fit(large)
    micro = build_job(
        compose([*EXACT, "data.batch_size=8", f"trainer.accumulate_grad_batches={accumulate}"]), tmp_path / "micro"
    )
    fit(micro)
    for name, tensor in _weights(large).items():
        torch.testing.assert_close(_weights(micro)[name], tensor, rtol=1e-5, atol=1e-6)
    steps = [(r["step"], r["train/loss"]) for r in _records(tmp_path / "micro") if "train/loss" in r]
    expected = [(r["step"], r["train/loss"]) for r in _records(tmp_path / "large") if "train/loss" in r]
    assert [s for s, _ in steps] == [s for s, _ in expected] == list(range(1, 2 * math.ceil(8 / accumulate) + 1))
    assert [loss for _, loss in steps] == pytest.approx([loss for _, loss in expected], rel=1e-5)


def test_ddp_all_reduces_once_per_optimizer_step(compose, tmp_path):
    """A real DDP (one gloo rank): gradients are all-reduced on the last micro-batch of each step only."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    from frame.launch.corridor import _free_port

    job = build_job(
        compose([*EXACT, "data.batch_size=8", "trainer.accumulate_grad_batches=2", "trainer.epochs=1"]), tmp_path
    )
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        calls = []
        job.train_model = DistributedDataParallel(job.model)
        job.train_model.register_comm_hook(None, lambda state, bucket: calls.append(1) or allreduce_hook(None, bucket))
        fit(job)
    finally:
        job.train_model = None
        dist.destroy_process_group()
    assert len(calls) == 4  # 8 batches, 4 optimizer steps, one bucket


def test_compiled_runs_resume_with_compile_on_or_off(compose, tmp_path, monkeypatch):
    """trainer.compile=true compiles through Dynamo and AOTAutograd (the aot_eager backend: inductor's
    C++ code generation takes a minute on this CPU; the GPU check runs inductor); checkpoints hold plain keys."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda *args, **kwargs: compile_(*args, **{**kwargs, "backend": counter}))
    finals = {}
    for first, then in ((True, False), (False, True)):
        run_dir = tmp_path / f"{first}-{then}"
        run_dir.mkdir()
        for compiled, epochs in ((first, 1), (then, 2)):
            torch._dynamo.reset()  # else the first model's compiled code serves the next one of the same shape
            frames = counter.frame_count
            job = build_job(
                compose([*EXACT, "data.batch_size=16", f"trainer.compile={compiled}", f"trainer.epochs={epochs}"]),
                run_dir,
            )
            fit(job)
            assert (counter.frame_count > frames) == compiled
            saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
            assert saved["state"]["epoch"] == epochs and not any("_orig_mod" in key for key in saved["model"])
        finals[first] = saved["model"]
    for name, tensor in finals[True].items():
        torch.testing.assert_close(finals[False][name], tensor, rtol=1e-5, atol=1e-6)


def test_channels_last_3d_trains_like_the_default_layout(compose, tmp_path):
    runs = {}
    for channels_last in (False, True):
        (tmp_path / str(channels_last)).mkdir()
        job = build_job(
            compose(
                [
                    *TINY,
                    "trainer.device=cpu",
                    "logger=[jsonl]",
                    "optimizer=sgd",  # Adam would
                    f"trainer.channels_last={channels_last}",
                ]
            ),  # turn rounding noise into steps
            tmp_path / str(channels_last),
        )
        layouts = []
        job.model.register_forward_pre_hook(
            lambda module, inputs: layouts.append(inputs[0].stride(1) == 1)
        )  # channels innermost (C=1: a stride tells)
        fit(job)
        weights = [p for p in job.model.parameters() if p.dim() == 5]
        assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights) == channels_last
        assert any(layouts) == channels_last  # training inputs
        runs[channels_last] = _weights(job)
    for name, tensor in runs[False].items():
        torch.testing.assert_close(runs[True][name], tensor, rtol=1e-4, atol=1e-5)


def test_fused_optimizer_skips_a_bad_step_without_reading_the_flag(compose, tmp_path, monkeypatch):
    """With an optimizer that takes found_inf the guard never turns a device flag into a Python bool
    (on a GPU that is a host sync); the kernel skips the update and its step count."""
    from frame.training.loop import BadStepGuard

    job = build_job(_classify(compose, "+optimizer.fused=true", "trainer.device=cpu"), tmp_path)
    guard = BadStepGuard(job, max_consecutive=3)
    assert not guard.host
    params = [p for p in job.model.parameters()]

    def step(ok):
        before = [p.detach().clone() for p in params]
        job.loss_fn(job.model(torch.randn(4, 16)), torch.tensor([0, 1, 2, 0])).backward()
        guard.step(job.optimizer, job.scaler, torch.tensor(ok), 1)
        job.optimizer.zero_grad()
        return not all(torch.equal(a, p) for a, p in zip(before, params))

    def no_bool(self):
        raise AssertionError("a tensor was read as a Python bool")

    monkeypatch.setattr(torch.Tensor, "__bool__", no_bool)
    assert step(True) and not step(False) and not step(False)
    assert int(guard.consecutive) == 2 and int(job.optimizer.state[params[0]]["step"]) == 1
    assert step(True) and int(guard.consecutive) == 0
    monkeypatch.undo()
    step(False), step(False), step(False)
    with pytest.raises(NonFiniteError, match="3 consecutive"):
        guard.check(5)


def test_a_fused_run_skips_and_counts_an_injected_nan(compose, tmp_path):
    cfg = _classify(compose, "trainer.epochs=1", "+optimizer.fused=true", "trainer.device=cpu")
    cfg.loss = {"_target_": "tests.training.test_loop.NanOnSteps", "steps": [2]}
    job = build_job(cfg, tmp_path)
    snapshots = []
    job.optimizer.register_step_post_hook(lambda *args: snapshots.append(_weights(job)))
    fit(job)
    assert all(torch.equal(snapshots[0][k], snapshots[1][k]) for k in snapshots[0])  # step 2 changed nothing
    assert not all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])
    assert _records(tmp_path)[-2]["train/bad_steps"] == 1


def test_the_machine_not_the_checkpoint_decides_fused(compose, tmp_path):
    job = build_job(_classify(compose, "trainer.device=cpu"), tmp_path)
    saved = job.optimizer.state_dict()
    saved["param_groups"][0]["fused"] = True  # written on a GPU, where frame picks the fused kernel
    job.optimizer.load_state_dict(saved)
    assert job.optimizer.param_groups[0]["fused"] is None


def test_a_stop_between_micro_batches_checkpoints_after_the_step_and_resumes_exactly(compose, tmp_path):
    import os
    import signal

    cfg = compose([*EXACT, "data.batch_size=8", "trainer.accumulate_grad_batches=2"])  # 4 steps of 2 batches an epoch
    (tmp_path / "reference").mkdir(), (tmp_path / "run").mkdir()
    fit(build_job(cfg, tmp_path / "reference"))
    job = build_job(cfg, tmp_path / "run")
    calls, loss_fn = [], job.loss_fn

    def loss_then_signal(prediction, target):  # 1-2: the check before the first epoch; 5: the 3rd batch
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss_fn(prediction, target)

    job.loss_fn = loss_then_signal
    with pytest.raises(SystemExit):
        fit(job)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert (saved["epoch"], saved["step"], saved["batch_in_epoch"]) == (0, 2, 4)  # after the step the 3rd batch began
    fit(build_job(cfg, tmp_path / "run"))
    final = {
        name: torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
        for name in ("reference", "run")
    }
    assert all(torch.equal(final["run"][key], tensor) for key, tensor in final["reference"].items())


@pytest.mark.parametrize("bad", [None, "float32", "float64", "sparse"])
def test_all_finite_sees_a_non_finite_gradient_in_any_dtype(bad):
    """The fused check runs per device and dtype: an inf in the second group counts as much as in the
    first, the gradients are left as they were (scaled by exactly 1), and sparse ones get a norm."""
    from frame.training.loop import all_finite

    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, dtype=torch.float64))]
    for p in params:
        p.grad = torch.full_like(p, 0.5)
    if bad == "sparse":
        params.append(torch.nn.Parameter(torch.ones(4)))
        params[-1].grad = torch.sparse_coo_tensor([[1]], [float("nan")], (4,))
    elif bad:
        next(p for p in params if str(p.dtype).endswith(bad)).grad[0] = float("inf")
    flags = {}
    assert bool(all_finite(params, flags)) is (bad is None)
    assert bool(all_finite(params[:1] if bad != "float32" else params[1:], flags))  # flags reset each call
    assert params[0].grad[1] == 0.5 and params[1].grad[1] == 0.5


class LateBadLabel:
    """A label transform that gives class 7 (the classify model has 4 outputs) from its 17th item on:
    past the 8 training and 8 validation items the check before the first epoch sees."""

    def __init__(self):
        self.calls = 0

    def __call__(self, target):
        self.calls += 1
        return 7 if self.calls > 16 else target


def test_a_class_index_beyond_the_outputs_in_a_later_batch_is_named(compose, tmp_path):
    """The check before the first epoch sees one batch; a later one stopped the run with torch's IndexError."""
    cfg = _classify(
        compose, "data.num_workers=0", "+data.label_transforms=[{_target_: tests.training.test_loop.LateBadLabel}]"
    )
    with pytest.raises(
        FrameError,
        match=r"class index 7 in the target, but the output has 4 channels \(indices 0-3\): "
        r"output \[8, 4\] float32, target \[8\] int64 \(epoch 1, training batch 1\)",
    ):
        fit(build_job(cfg, tmp_path))
