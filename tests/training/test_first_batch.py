"""The check before the first epoch (frame.training.first_batch): mistakes stop the run with both shapes named,
and the check itself changes nothing."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from frame.core.errors import FrameError
from frame.training.build import build_job
from frame.training.first_batch import check_first_batches
from frame.training.loop import fit
from tests.conftest import metrics

CLASSIFY = ["experiment=classify", "data.dataset.num_samples=64", "data.batch_size=8", "trainer.epochs=1"]


class OneOutput(nn.Module):
    """A regression head that gives `[B]` (squeezed), as a new user writes it."""

    def __init__(self, in_features, hidden=(), out_features=1, dropout=0.0):  # the MLP preset's params
        super().__init__()
        self.linear = nn.Linear(in_features, 1)
        self.norm = nn.BatchNorm1d(in_features)

    def forward(self, x):
        return self.linear(self.norm(x)).squeeze(1)


def as_column(target):
    """Class index -> `[1]` float: a target of one column."""
    return torch.tensor([float(target)])


def _classify(compose, *overrides):
    return compose([*CLASSIFY, *overrides])


@pytest.mark.parametrize("loss", ["torch.nn.MSELoss", "torch.nn.L1Loss", "torch.nn.HuberLoss"])
def test_a_loss_that_would_broadcast_stops_before_training(compose, tmp_path, loss):
    cfg = _classify(
        compose,
        "model._target_=tests.training.test_first_batch.OneOutput",
        f"loss._target_={loss}",
        "+data.label_transforms=[{_target_: tests.training.test_first_batch.as_column, _partial_: true}]",
        "evaluators=[]",
        "trainer.monitor=val/loss",
        "trainer.monitor_mode=min",
    )
    job = build_job(cfg, tmp_path)
    with pytest.raises(FrameError, match=r"broadcast output \[8\] float32, target \[8, 1\] float32") as error:
        fit(job)
    assert "[8, 8]" in str(error.value)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_class_index_beyond_the_outputs_is_named(compose, tmp_path):
    cfg = _classify(compose, "model.out_features=3")  # the data has 4 classes
    with pytest.raises(
        FrameError, match=r"class index 3 in the target, but the output has 3 channels.*output \[8, 3\]"
    ):
        fit(build_job(cfg, tmp_path))


def test_a_dtype_the_loss_cannot_take_is_named(compose, tmp_path):
    cfg = _classify(
        compose, "+data.label_transforms=[{_target_: tests.training.test_first_batch.as_column, _partial_: true}]"
    )
    with pytest.raises(
        FrameError, match=r"CrossEntropyLoss\) fails on output \[8, 4\] float32, target \[8, 1\] float32"
    ):
        fit(build_job(cfg, tmp_path))


def test_a_monitor_no_evaluator_reports_is_caught_with_a_suggestion(compose, tmp_path):
    cfg = _classify(compose, "trainer.monitor=val/acuracy")
    with pytest.raises(FrameError, match=r"val/acuracy is not among.*Did you mean 'val/accuracy'"):
        fit(build_job(cfg, tmp_path))
    assert not (tmp_path / "metrics.jsonl").exists()  # stopped before the first step, and before any logger


def test_two_evaluators_with_one_key_are_refused(compose, tmp_path):
    cfg = _classify(compose, "+evaluators.again._target_=frame.training.evaluators.Accuracy")
    with pytest.raises(FrameError, match=r"evaluators.accuracy and evaluators.again both report 'accuracy'"):
        fit(build_job(cfg, tmp_path))


def test_the_check_changes_nothing(compose, tmp_path):
    cfg = _classify(
        compose,
        "model._target_=tests.training.test_first_batch.OneOutput",
        "loss._target_=torch.nn.MSELoss",
        "+data.label_transforms=[{_target_: frame.data.transforms.StandardScaleTensor}]",
        "evaluators=[]",
        "trainer.monitor=val/loss",
        "trainer.monitor_mode=min",
    )
    job = build_job(cfg, tmp_path)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    before = {k: v.clone() for k, v in job.model.state_dict().items()}
    draws = random.random(), np.random.rand(), torch.rand(1)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    check_first_batches(job, torch.autocast("cpu", enabled=False), "val/loss")
    assert (random.random(), np.random.rand()) == draws[:2] and torch.equal(torch.rand(1), draws[2])
    after = job.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert all(p.grad is None for p in job.model.parameters())
    assert job.optimizer.state_dict()["state"] == {}


def test_plateau_mode_follows_the_monitor_and_a_contradiction_is_refused(compose, tmp_path):
    cfg = _classify(compose, "lr_scheduler=plateau", "~lr_scheduler.mode")
    assert build_job(cfg, tmp_path).scheduler.mode == "max"  # trainer.monitor=val/accuracy, monitor_mode=max
    cfg = _classify(compose, "lr_scheduler=plateau", "lr_scheduler.mode=min")
    with pytest.raises(FrameError, match="lr_scheduler.mode=min contradicts trainer.monitor_mode=max"):
        build_job(cfg, tmp_path / "b")


def test_train_loss_is_logged_every_epoch_with_fewer_steps_than_the_log_interval(compose, tmp_path):
    cfg = _classify(compose, "trainer.epochs=2", "trainer.log_every_n_steps=50")  # 7 steps an epoch
    fit(build_job(cfg, tmp_path))
    logged = [(r["epoch"], r["step"]) for r in metrics(tmp_path) if "train/loss" in r]
    assert logged == [(0, 7), (1, 14)]


ORGANS_TINY = [
    "data.dataset.num_samples=4",
    "data.dataset.size=[16,16,16]",
    "model.channels=[4,8]",
    "model.strides=[2]",
    "data.split_ratio=0.5",
    "trainer.epochs=1",
]
SOFTMAX_LOSS = ["loss._target_=monai.losses.DiceCELoss", "+loss.to_onehot_y=true", "+loss.softmax=true"]
LABEL_MAP = "+data.label_transforms=[{_target_: tests.training.test_first_batch.label_map, _partial_: true}]"


def label_map(masks):
    """One-hot organ masks `[L, ...]` -> a MONAI label map `[1, ...]` of floats (0 background, organ i -> i + 1)."""
    return (masks * torch.arange(1, len(masks) + 1).view(-1, *[1] * (masks.ndim - 1))).amax(0, keepdim=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            [
                *SOFTMAX_LOSS,
                "model.out_channels=1",
                LABEL_MAP,
                "evaluators=[]",
                "trainer.monitor=val/loss",
                "trainer.monitor_mode=min",
            ],
            r"the loss \(DiceCELoss\) takes a softmax over the output's channels, but the output has one channel: "
            r"output \[2, 1, 16, 16, 16\] float32, target \[2, 1, 16, 16, 16\] float32 \(first training batch\)\. Give the model",
        ),
        (
            [
                "loss._target_=monai.losses.DiceLoss",
                "+loss.sigmoid=true",
                "model.out_channels=1",
                LABEL_MAP,
                "evaluators=[]",
                "trainer.monitor=val/loss",
                "trainer.monitor_mode=min",
            ],
            r"the loss \(DiceLoss\) takes a sigmoid per channel and wants 0 or 1 in each, but the target is a class-index "
            r"map \(values up to [2-4]\)",
        ),
    ],
)
def test_a_loss_whose_activation_cannot_mean_the_output_stops_before_training(compose, tmp_path, overrides, message):
    """MONAI only warns ('single channel prediction, softmax=True ignored') and trains on a constant."""
    with pytest.raises(FrameError, match=message):
        fit(build_job(compose([*ORGANS_TINY, *overrides]), tmp_path))
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_dice_metric_by_name_on_a_label_map_follows_the_softmax_loss_and_scores_like_monai(compose, tmp_path):
    """The spleen tutorial's pair, DiceCELoss(to_onehot_y, softmax) and DiceMetric given by name: figures as
    MONAI's AsDiscrete(argmax=True, to_onehot=N) gives them (was: raw logits, a Dice whatever the model does)."""
    import contextlib

    from monai.metrics import DiceMetric
    from monai.transforms import AsDiscrete

    from frame.training.loop import validate

    cfg = compose(
        [
            *ORGANS_TINY,
            *SOFTMAX_LOSS,
            "model.out_channels=5",
            LABEL_MAP,
            "evaluators=[]",
            "+evaluators.dice={_target_: monai.metrics.DiceMetric, reduction: mean}",
            "trainer.monitor=val/dice",
        ]
    )
    job = build_job(cfg, tmp_path)
    check_first_batches(job, contextlib.nullcontext(), "val/dice")  # the label map passes the checks
    reference = DiceMetric(reduction="mean")
    job.model.eval()
    with torch.no_grad():
        for sample, target in job.val_loader:
            output = job.model(sample)
            reference(
                y_pred=[AsDiscrete(argmax=True, to_onehot=5)(o) for o in output],
                y=[AsDiscrete(to_onehot=5)(t) for t in target],
            )
    scored, _ = validate(job, contextlib.nullcontext())
    assert scored["val/dice"] == pytest.approx(float(reference.aggregate()), abs=1e-6)
