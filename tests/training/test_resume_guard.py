"""The resume guard: meaningful config changes are refused with a diff; harmless ones pass."""

import json
import logging

import pytest
from omegaconf import OmegaConf

from frame.training.resume_guard import ResumeRefused, check_resume, flatten
from tests.conftest import run_frame

CLASSIFY = ["experiment=classify"]
SMALL = ["experiment=classify", "name=run", "data.dataset.num_samples=64", "data.batch_size=8", "trainer.device=cpu"]


def _saved(compose, *overrides, world_size=1):
    config = OmegaConf.to_yaml(compose([*CLASSIFY, *overrides]), resolve=True)
    return {
        "config": config,
        "data": {"world_size": world_size},
        "state": {"epoch": 2, "step": 26},
        "_path": "outputs/classify/checkpoints/last.pt",
    }


def _current(compose, *overrides):
    return OmegaConf.to_yaml(compose([*CLASSIFY, *overrides]), resolve=True)


def test_flatten_names_every_leaf_by_its_key_path():
    node = {"model": {"hidden": [64, 64], "act": None}, "data": {"tf": [{"_target_": "T", "p": 1}], "empty": {}}}
    assert flatten(node) == {
        "model.hidden": [64, 64],
        "model.act": None,
        "data.tf[0]._target_": "T",
        "data.tf[0].p": 1,
        "data.empty": {},
    }


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.epochs=9", "trainer.log_every_n_steps=1"],
        ["data.num_workers=2", "trainer.checkpoint_every_n_steps=5", "evaluators={}"],
        ["optimizer.lr=0.1", "name=other", "resume=true", "force_resume=false"],
    ],
)
def test_harmless_changes_are_allowed(compose, overrides, caplog):
    with caplog.at_level(logging.INFO):
        check_resume(_saved(compose), _current(compose, *overrides), world_size=1, force=False)
    if "optimizer.lr=0.1" in overrides:
        assert "continue from their saved state, so these changes have no effect: optimizer.lr" in caplog.text
    else:
        assert "with changed settings" in caplog.text


@pytest.mark.parametrize(
    "overrides,line",
    [
        (["model.hidden=[32]"], "model.hidden: [64, 64] -> [32]"),
        (["data.batch_size=8"], "data.batch_size: 32 -> 8"),
        (["data.dataset.num_samples=64"], "data.dataset.num_samples: 512 -> 64"),
        (["seed=1"], "seed: 0 -> 1"),
        (["optimizer=sgd"], "optimizer._target_: 'torch.optim.Adam' -> 'torch.optim.SGD'"),
        (["lr_scheduler=cosine"], "lr_scheduler._target_: (absent) -> 'torch.optim.lr_scheduler.CosineAnnealingLR'"),
        (
            ["data.sample_transforms=[{_target_:frame.data.transforms.StandardScaleTensor}]"],
            "data.sample_transforms[0]._target_: (absent) -> 'frame.data.transforms.StandardScaleTensor'",
        ),
    ],
)
def test_meaningful_changes_are_refused_with_a_readable_diff(compose, overrides, line):
    with pytest.raises(ResumeRefused) as error:
        check_resume(_saved(compose), _current(compose, *overrides, "trainer.epochs=9"), world_size=1, force=False)
    message = str(error.value)
    assert "outputs/classify/checkpoints/last.pt (epoch 2, step 26)" in message
    refused, allowed = message.split("other changes (allowed on their own):")
    assert f"\n  {line}\n" in refused
    assert "trainer.epochs: 5 -> 9" in allowed and "force_resume=true" in allowed and "fresh=true" in allowed


def test_a_changed_world_size_is_refused_and_force_lets_it_through(compose, caplog):
    with pytest.raises(ResumeRefused, match="world_size: 2 -> 1"):
        check_resume(_saved(compose, world_size=2), _current(compose), world_size=1, force=False)
    with caplog.at_level(logging.WARNING):
        check_resume(_saved(compose, world_size=2), _current(compose), world_size=1, force=True)
    assert "force_resume=true: resuming" in caplog.text and "world_size: 2 -> 1" in caplog.text


@pytest.mark.slow
def test_refused_resume_exits_2_with_the_diff_and_force_resume_goes_on(tmp_path):
    run_frame(["train", *SMALL, "trainer.epochs=1"], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "run"
    before = (run_dir / "checkpoints" / "last.pt").read_bytes(), (run_dir / "metrics.jsonl").read_text()

    refused = run_frame(["train", *SMALL, "trainer.epochs=2", "model.hidden=[32]", "optimizer=sgd"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "model.hidden: [64, 64] -> [32]" in refused.stderr
    assert "optimizer._target_: 'torch.optim.Adam' -> 'torch.optim.SGD'" in refused.stderr
    assert "trainer.epochs: 1 -> 2" in refused.stderr and "force_resume=true" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert ((run_dir / "checkpoints" / "last.pt").read_bytes(), (run_dir / "metrics.jsonl").read_text()) == before

    forced = run_frame(
        ["train", *SMALL, "trainer.epochs=2", "optimizer=sgd", "force_resume=true"], cwd=tmp_path, check=0
    )
    output = forced.stdout + forced.stderr
    assert "force_resume=true: resuming" in output and "optimizer._target_" in output
    assert "optimizer changed from torch.optim.adam.Adam to torch.optim.sgd.SGD: it starts fresh" in output
    assert [
        r["epoch"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "val/loss" in r
    ] == [1, 2]


def test_a_run_saved_before_data_val_and_inferer_existed_resumes(compose, caplog):
    """Keys frame added since (here `data.val`, `inferer`, at their null defaults) are no change to the run."""
    saved = _saved(compose)
    older = OmegaConf.create(saved["config"])
    del older.data["val"], older["inferer"]
    saved["config"] = OmegaConf.to_yaml(older)
    with caplog.at_level(logging.INFO):
        check_resume(saved, _current(compose), world_size=1, force=False)
    assert "data.val" not in caplog.text
    with pytest.raises(ResumeRefused, match=r"data.val.dataset._target_: \(absent\) -> 'x.Y'"):
        check_resume(saved, _current(compose, "data.val.dataset={_target_: x.Y}"), world_size=1, force=False)
