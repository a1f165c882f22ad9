"""The training loop, in-process on tiny configs."""

import math

import pytest
import torch
from torch import nn

from frame.build import build_job
from frame.loop import NonFiniteError, fit
from tests.conftest import TINY, metrics


class NanOnSteps(nn.Module):
    """Cross-entropy that returns NaN on the listed (1-based) training steps."""

    calls = 0

    def __init__(self, steps):
        super().__init__()
        self.steps = set(steps)
        NanOnSteps.calls = -1  # call 0: the training batch of the check before the first epoch (frame.first_batch)

    def forward(self, prediction, target):
        NanOnSteps.calls += torch.is_grad_enabled()  # training calls only: validation runs without gradients
        loss = nn.functional.cross_entropy(prediction, target)
        return loss * math.nan if NanOnSteps.calls in self.steps else loss


def _records(run_dir):
    return metrics(run_dir)


def _classify(compose, *overrides):
    return compose(["experiment=classify", "data.dataset.num_samples=64", "data.batch_size=8",
                    "trainer.epochs=2", "trainer.log_every_n_steps=1", *overrides])


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
    cfg.loss = {"_target_": "tests.test_loop.NanOnSteps", "steps": [2]}
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
    cfg.loss = {"_target_": "tests.test_loop.NanOnSteps", "steps": [2, 3, 4, 5]}
    with pytest.raises(NonFiniteError, match="step 4"):
        fit(build_job(cfg, tmp_path))


@pytest.mark.parametrize("scheduler", ["cosine", "multistep", "plateau", "warmup"])
def test_each_scheduler_steps(compose, tmp_path, scheduler):
    overrides = ["lr_scheduler.milestones=[1]"] if scheduler == "multistep" else []
    overrides += ["lr_scheduler.total_iters=4"] if scheduler == "warmup" else []
    overrides += ["lr_scheduler.patience=0", "lr_scheduler.factor=0.1", "optimizer.lr=1e-6"] if scheduler == "plateau" else []
    cfg = _classify(compose, f"lr_scheduler={scheduler}", "trainer.epochs=3", *overrides)
    job = build_job(cfg, tmp_path)
    initial = job.optimizer.param_groups[0]["lr"]
    fit(job)
    assert job.optimizer.param_groups[0]["lr"] != initial
    if scheduler == "plateau":  # fed the monitored metric: with lr ~0 accuracy cannot improve
        assert job.optimizer.param_groups[0]["lr"] < initial


def test_gradient_clipping_bounds_the_update(compose, tmp_path):
    cfg = _classify(compose, "trainer.grad_norm_clip=1e-3", "optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=1.0")
    job = build_job(cfg, tmp_path)
    before = torch.cat([p.detach().flatten().clone() for p in job.model.parameters()])
    job.cfg.trainer.epochs = 1
    fit(job)
    after = torch.cat([p.detach().flatten() for p in job.model.parameters()])
    steps = len(job.train_loader)
    assert (after - before).norm() <= 1e-3 * steps * 1.0001
