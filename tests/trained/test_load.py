"""A trained run's config with command-line overrides, as `frame eval` and `frame predict` apply them."""

import pytest
from omegaconf import OmegaConf

from frame.config.compose import without_hydra
from frame.trained.load import run_config


@pytest.mark.parametrize("override", ["evaluators=[dice]", "evaluators=dice", "evaluators=[dice,accuracy]"])
def test_evaluators_picked_by_name_are_frames_evaluator_configs(compose, override):
    saved = {"config": OmegaConf.to_yaml(without_hydra(compose(["evaluators=[accuracy]"])))}
    cfg = run_config(saved, [override])
    names = override.split("=")[1].strip("[]").split(",")
    assert list(cfg.evaluators) == names
    assert {name: cfg.evaluators[name]._target_ for name in names} == {
        name: f"frame.training.evaluators.{name.capitalize()}" for name in names
    }
