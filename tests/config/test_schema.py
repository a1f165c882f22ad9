"""Every config group option composes and instantiates on the CPU; types are enforced at compose time."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

CONF = Path(__file__).resolve().parents[2] / "conf"


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "option", [pytest.param(o, marks=pytest.mark.slow) if o == "unet3d" else o for o in _options("model")]
)  # unet3d: MONAI's import, seconds (test-fast leaves it out)
def test_model_options_instantiate(compose, option):
    overrides = [f"model={option}"] + (["data=synthetic_classes"] if option == "mlp" else [])
    cfg = compose(overrides)
    assert instantiate(cfg.model) is not None


MONAI_BACKED = {("loss", "dice_bce"), ("evaluators", "dice")}  # frame's wrappers of MONAI's DiceLoss, DiceMetric


@pytest.mark.parametrize(
    "group,option",
    [
        pytest.param(g, o, marks=pytest.mark.slow) if (g, o) in MONAI_BACKED else (g, o)
        for g in ("loss", "optimizer", "lr_scheduler", "evaluators", "logger")
        for o in _options(g)
    ],
)  # MONAI-backed: MONAI's import, seconds (test-fast leaves them out)
def test_group_options_instantiate(compose, group, option):
    import torch

    cfg = compose([f"{group}={option}"])
    node = cfg[group]
    if group == "optimizer":
        assert isinstance(instantiate(node)([torch.nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)
    elif group == "lr_scheduler":
        from frame.training.build import build_scheduler

        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        assert build_scheduler(cfg, optimizer) is not None
    elif group in ("evaluators", "logger"):
        assert all(instantiate(child) is not None for child in node.values())
    else:
        assert callable(instantiate(node))


@pytest.mark.parametrize("option", _options("data"))
def test_data_options_build_a_dataset(compose, option):
    cfg = compose([f"data={option}"])
    dataset = instantiate(cfg.data.dataset)
    sample, label = dataset[0]
    assert len(dataset) > 1 and sample.ndim >= 1


@pytest.mark.parametrize("option", _options("experiment"))
def test_experiments_compose(compose, option):
    cfg = compose([f"experiment={option}"])
    assert cfg.name and "_target_" in cfg.model


def test_types_are_enforced(compose):
    with pytest.raises(ConfigCompositionException):
        compose(["trainer.epochs=abc"])
    with pytest.raises(ConfigCompositionException):
        compose(["trainer.no_such_key=1"])


def test_warmup_scheduler_steps_per_step(compose):
    assert compose(["lr_scheduler=warmup"]).lr_scheduler.interval == "step"


@pytest.mark.parametrize(
    "group", ["model", "loss", "optimizer", "lr_scheduler", "data", "trainer", "evaluators", "logger"]
)
def test_group_options_touch_only_their_own_node(compose, group):
    """lightning-hydra-template's rule: picking `group=option` changes the group's node and nothing else
    (what to monitor, or when a scheduler steps, is not another group's business)."""
    from omegaconf import OmegaConf

    def composed(*overrides):
        return OmegaConf.to_container(compose(["~experiment", *overrides]), resolve=False)

    base = composed()
    for option in _options(group):
        cfg = composed(f"{group}={option}")
        assert {key for key in base.keys() | cfg.keys() if base.get(key) != cfg.get(key)} <= {group}, option


def test_the_default_experiment_is_experiment_organs(compose):
    from omegaconf import OmegaConf

    default, organs = compose(), compose(["experiment=organs"])
    assert OmegaConf.to_container(default) == OmegaConf.to_container(organs)
    assert (default.trainer.monitor, default.trainer.monitor_mode.value) == ("val/dice", "max")


def test_a_local_config_in_the_config_dir_sets_machine_settings(tmp_path):
    """`optional local`: local/default.yaml in the user's --config-dir (never committed, as in
    lightning-hydra-template) is read when present, at the top level, and is no error when absent."""
    from tests.conftest import run_frame

    assert "num_workers: 0" in run_frame(["train", "--cfg", "job"], cwd=tmp_path, check=0).stdout
    (tmp_path / "configs" / "local").mkdir(parents=True)
    (tmp_path / "configs" / "local" / "default.yaml").write_text("data:\n  num_workers: 3\n")
    shown = run_frame(["train", "--config-dir", "configs", "--cfg", "job"], cwd=tmp_path, check=0).stdout
    assert "num_workers: 3" in shown


ORGANS = "_target_:frame.data.synthetic.SyntheticOrgans,num_samples:2"


@pytest.mark.parametrize("override", [f"data.test={{dataset:{{{ORGANS}}}}}", f"data.test.dataset={{{ORGANS}}}"])
def test_a_test_set_is_given_on_the_command_line(tmp_path, compose, override):
    from tests.conftest import run_frame

    assert compose()["data"]["test"]["dataset"] is None  # none unless asked for
    test = compose([override]).data.test
    assert test.dataset._target_ == "frame.data.synthetic.SyntheticOrgans" and test.dataset.num_samples == 2
    out = run_frame(["check", override], cwd=tmp_path, check=0).stdout  # the real command line, checked as a component
    assert any(
        line.split()[:2] == ["data.test.dataset", "frame.data.synthetic.SyntheticOrgans"] for line in out.splitlines()
    )
