"""The check before the first epoch (frame.training.first_batch): mistakes stop the run with both shapes named,
and the check itself changes nothing."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from frame.training.build import build_job
from frame.core.errors import FrameError
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
    cfg = _classify(compose, "model._target_=tests.training.test_first_batch.OneOutput", f"loss._target_={loss}",
                    "+data.label_transforms=[{_target_: tests.training.test_first_batch.as_column, _partial_: true}]",
                    "evaluators=[]", "trainer.monitor=val/loss", "trainer.monitor_mode=min")
    job = build_job(cfg, tmp_path)
    with pytest.raises(FrameError, match=r"broadcast output \[8\] float32, target \[8, 1\] float32") as error:
        fit(job)
    assert "[8, 8]" in str(error.value)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_class_index_beyond_the_outputs_is_named(compose, tmp_path):
    cfg = _classify(compose, "model.out_features=3")  # the data has 4 classes
    with pytest.raises(FrameError, match=r"class index 3 in the target, but the output has 3 channels.*output \[8, 3\]"):
        fit(build_job(cfg, tmp_path))


def test_a_dtype_the_loss_cannot_take_is_named(compose, tmp_path):
    cfg = _classify(compose, "+data.label_transforms=[{_target_: tests.training.test_first_batch.as_column, _partial_: true}]")
    with pytest.raises(FrameError, match=r"CrossEntropyLoss\) fails on output \[8, 4\] float32, target \[8, 1\] float32"):
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
    cfg = _classify(compose, "model._target_=tests.training.test_first_batch.OneOutput", "loss._target_=torch.nn.MSELoss",
                    "+data.label_transforms=[{_target_: frame.data.transforms.StandardScaleTensor}]",
                    "evaluators=[]", "trainer.monitor=val/loss", "trainer.monitor_mode=min")
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
