"""What a checkpoint holds (plain data only) and putting it back."""

import logging
import random

import numpy as np
import pytest
import torch

from frame.core.errors import FrameError
from frame.training.build import build_job
from frame.training.checkpoint import load_checkpoint
from frame.training.loop import BadStepGuard, StepWindow
from frame.training.state import TrainState, _rng_states, _set_rng_states, capture, restore

CLASSIFY = ["experiment=classify", "data.dataset.num_samples=64", "data.batch_size=8", "trainer.device=cpu"]


def _draws():
    return random.random(), np.random.normal(), torch.rand(3).tolist(), random.gauss(0, 1), np.random.randn()


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    random.gauss(0, 1), np.random.randn()  # leave a cached gaussian in both generators
    torch.save(_rng_states(), tmp_path / "rng.pt")
    expected = _draws()
    _draws()
    _set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == expected


def _job(compose, tmp_path, *overrides):
    return build_job(compose([*CLASSIFY, *overrides]), tmp_path)


def _counters(job):
    return {"window": StepWindow(job.device), "guard": BadStepGuard(job, 3)}


def test_capture_is_plain_data_and_restores_everything(compose, tmp_path):
    job = _job(compose, tmp_path, "lr_scheduler=cosine")
    job.model(torch.randn(4, 16)).sum().backward()
    job.optimizer.step(), job.scheduler.step()
    counters = _counters(job)
    counters["window"].add(torch.tensor(0.25), torch.tensor(True))
    counters["guard"].consecutive = 2
    state = TrainState(epoch=1, step=7, batch_in_epoch=3, best=0.5)
    job.checkpoints.save(capture(job, state, counters))
    job.checkpoints.wait()
    saved = load_checkpoint(job.checkpoints.dir / "last.pt")  # weights_only=True
    assert saved["data"] == {"seed": 0, "length": 51, "shuffle": True, "batch_size": 8, "world_size": 1}
    assert "torch.optim.Adam" in saved["config"] and saved["optimizer_class"] == "torch.optim.adam.Adam"

    other = _job(compose, tmp_path / "other", "lr_scheduler=cosine")
    restored, counters = TrainState(), _counters(other)
    restore(other, restored, saved, counters)
    assert (restored.epoch, restored.step, restored.batch_in_epoch, restored.best) == (1, 7, 3, 0.5)
    for mine, theirs in zip(job.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(mine, theirs)
    assert other.optimizer.state_dict()["state"][0]["step"] == 1
    assert other.scheduler.last_epoch == 1
    assert float(counters["window"].loss) == 0.25 and counters["guard"].consecutive == 2


def test_restore_with_another_optimizer_kind_starts_it_fresh(compose, tmp_path, caplog):
    job = _job(compose, tmp_path)
    job.model(torch.randn(4, 16)).sum().backward()
    job.optimizer.step()
    saved = capture(job, TrainState(step=1), _counters(job))
    other = _job(compose, tmp_path / "other", "optimizer=sgd")
    with caplog.at_level(logging.WARNING):
        restore(other, TrainState(), saved, _counters(other))
    assert "optimizer changed from torch.optim.adam.Adam to torch.optim.sgd.SGD: it starts fresh" in caplog.text
    assert torch.equal(other.model.net[0].weight, job.model.net[0].weight)


def test_restore_refuses_weights_that_do_not_fit(compose, tmp_path):
    job = _job(compose, tmp_path)
    saved = capture(job, TrainState(), _counters(job))
    other = _job(compose, tmp_path / "other", "model.hidden=[32]")
    with pytest.raises(FrameError, match="(?s)do not fit the configured model.*size mismatch"):
        restore(other, TrainState(), saved, _counters(other))


def test_switching_to_fp16_resumes_with_a_fresh_grad_scaler(compose, tmp_path):
    job = _job(compose, tmp_path)
    saved = capture(job, TrainState(step=3), _counters(job))
    other = _job(compose, tmp_path / "other", "trainer.precision=fp16")
    restore(other, TrainState(), saved, _counters(other))
    assert other.scaler.is_enabled() and other.scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()
