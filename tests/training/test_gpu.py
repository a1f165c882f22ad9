"""On a CUDA GPU: no host sync between log points, fused optimizers, compile, channels_last,
gradient accumulation, and bf16/fp16 end to end. Skipped without CUDA (scripts/bench/gpu_check.sh
runs them where a GPU is lent)."""

import logging

import pytest
import torch

from frame.tracking.base import MetricLogger
from frame.training.build import build_job
from frame.training.loop import BadStepGuard, StepWindow, fit
from tests.conftest import metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = ["trainer.device=cuda", "logger=[jsonl]", "trainer.log_every_n_steps=5", "trainer.epochs=2"]
UNET = [*CUDA, "data.dataset.num_samples=24"]  # the default experiment: 9 steps of 2 per epoch
CLASSIFY = [*CUDA, "experiment=classify", "data.dataset.num_samples=320", "data.batch_size=16", "model.dropout=0"]


class SyncsAreErrors(MetricLogger):
    """Turns a host sync into an error from each epoch's first batch on (the loop's log points,
    validation and checkpoints are let through by `_allow_syncs_in`)."""

    def epoch_start(self, epoch, batches):
        torch.cuda.set_sync_debug_mode("error")

    def finish(self, status):
        torch.cuda.set_sync_debug_mode(0)


def _allow_syncs_in(monkeypatch, owner, name):
    original = getattr(owner, name)

    def allowed(*args, **kwargs):
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            return original(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    monkeypatch.setattr(owner, name, allowed)


@pytest.mark.parametrize(
    "experiment,precision", [("unet", "fp32"), ("unet", "bf16"), ("unet", "fp16"), ("classify", "fp32")]
)
def test_no_host_sync_between_log_points(compose, tmp_path, monkeypatch, experiment, precision):
    import frame.training.loop

    for owner, name in (
        (StepWindow, "read"),
        (BadStepGuard, "check"),
        (frame.training.loop, "validate"),
        (frame.training.loop, "_save"),
        (frame.training.loop, "check_first_batches"),
    ):
        _allow_syncs_in(monkeypatch, owner, name)
    job = build_job(
        compose([*(UNET if experiment == "unet" else CLASSIFY), f"trainer.precision={precision}"]), tmp_path
    )
    assert job.optimizer.param_groups[0]["fused"] is True  # picked on CUDA: it takes found_inf
    job.loggers.append(SyncsAreErrors())
    try:
        fit(job)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    losses = [r["train/loss"] for r in metrics(tmp_path) if "train/loss" in r]
    assert len(losses) >= 4 and losses[-1] == losses[-1]  # fp16: GradScaler's first overflows may skip a window


def test_a_job_that_sets_foreach_keeps_it_and_is_warned(compose, tmp_path, caplog):
    job = build_job(compose([*CLASSIFY, "+optimizer.foreach=true", "trainer.epochs=1"]), tmp_path)
    assert job.optimizer.param_groups[0]["fused"] is not True and job.optimizer.param_groups[0]["foreach"]
    with caplog.at_level(logging.WARNING, logger="frame"):
        fit(job)
    assert "host sync every step" in caplog.text


def test_compile_with_inductor_and_resume_without(compose, tmp_path):
    torch._dynamo.reset()
    fit(build_job(compose([*CLASSIFY, "trainer.compile=true", "trainer.epochs=1"]), tmp_path))
    fit(build_job(compose([*CLASSIFY, "trainer.compile=false", "trainer.epochs=2"]), tmp_path))
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["state"]["epoch"] == 2 and not any("_orig_mod" in key for key in saved["model"])


def test_accumulation_equals_the_larger_batch(compose, tmp_path):
    runs = {}
    for batch, accumulate in ((32, 1), (16, 2)):
        run_dir = tmp_path / str(accumulate)
        run_dir.mkdir()
        job = build_job(
            compose([*CLASSIFY, f"data.batch_size={batch}", f"trainer.accumulate_grad_batches={accumulate}"]), run_dir
        )
        fit(job)
        runs[accumulate] = job.model.state_dict()
    for name, tensor in runs[1].items():
        torch.testing.assert_close(runs[2][name], tensor, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision,compiled", [("bf16", True), ("fp16", False)])  # one inductor build of the UNet
def test_mixed_precision_end_to_end(compose, tmp_path, precision, compiled):
    """The default experiment with channels_last and accumulation (and compile), then resumed without compile."""
    args = [
        *UNET,
        f"trainer.precision={precision}",
        "trainer.channels_last=true",
        "trainer.accumulate_grad_batches=2",
        "trainer.log_every_n_steps=2",
    ]
    torch._dynamo.reset()
    job = build_job(compose([*args, f"trainer.compile={compiled}"]), tmp_path)
    seen, loss_fn = [], job.loss_fn
    job.loss_fn = lambda prediction, target: seen.append(prediction.dtype) or loss_fn(prediction, target)
    fit(job)
    assert _DTYPES[precision] in seen
    fit(build_job(compose([*args, "trainer.epochs=3"]), tmp_path))
    records = metrics(tmp_path)
    dice = [r["val/dice"] for r in records if "val/dice" in r]
    assert len(dice) == 3 and all(0 <= d <= 1 for d in dice)
    last = [r for r in records if "train/loss" in r][-1]
    assert last["train/loss"] == last["train/loss"]  # a number (fp16: GradScaler's first overflows count as bad steps)
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["state"]["step"] == 3 * 5  # 9 batches per epoch: 4 steps of 2 and a ragged 1
    assert not any("_orig_mod" in key for key in saved["model"])


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
