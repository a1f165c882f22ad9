"""Pins of what frame needs from Hydra's internals (frame/compat/hydra.py): a Hydra release that
moves one fails the test named beside its use there."""

import inspect
import re

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from frame.compat import hydra as compat


def _parsed(*lines):
    return OverridesParser.create().parse_overrides(list(lines))


def test_apply_overrides():
    config = OmegaConf.structured({"trainer": {"epochs": 5, "monitor": "val/loss"}})
    OmegaConf.set_struct(config, True)
    compat.ConfigLoaderImpl._apply_overrides_to_config(_parsed("trainer.epochs=7", "+extra=1"), config)
    assert config.trainer.epochs == 7 and config.extra == 1
    with pytest.raises(ConfigCompositionException):  # a key the config lacks, without +, is refused
        compat.ConfigLoaderImpl._apply_overrides_to_config(_parsed("trainer.nope=1"), config)


def test_override_dirname():
    name = compat.get_overrides_dirname(
        overrides=_parsed("b=2", "a=1", "seed=3"), kv_sep="=", item_sep=",", exclude_keys=["seed"]
    )
    assert name == "a=1,b=2"  # sorted, excluded keys left out: `${hydra:job.override_dirname}`


def test_compose():
    from frame.config.app import CONFIG_MODULE
    from frame.config.schema import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        hydra = compat.Hydra.create_main_hydra2(
            task_name="frame", config_search_path=compat.create_config_search_path(CONFIG_MODULE)
        )
        cfg = hydra.compose_config("train", ["trainer.epochs=3"], run_mode=RunMode.RUN, with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()
    assert cfg.trainer.epochs == 3 and cfg.hydra.job.config_name == "train"


def test_app_entry_points():
    utils = compat.internal_utils
    assert list(inspect.signature(utils._run_hydra).parameters)[:5] == [
        "args",
        "args_parser",
        "task_function",
        "config_path",
        "config_name",
    ]
    assert list(inspect.signature(utils.run_and_report).parameters) == ["func"]
    assert utils.run_and_report(lambda: 42) == 42  # calls what it reports on
    assert "multirun" in vars(utils.get_args_parser().parse_args(["-m"]))
    assert (
        utils.create_automatic_config_search_path.__code__.co_argcount == 3
    )  # (calling_file, calling_module, config_path)


def test_speedup_targets():
    from frame.config.speedups import _hydra_interpolation_map  # Hydra's own, kept before any replacement

    assert _hydra_interpolation_map.__module__ == compat.defaults_list.__name__
    assert list(inspect.signature(_hydra_interpolation_map).parameters) == ["overrides", "defaults_list", "self_added"]
    # frame's __init__ sets what Hydra's does (a copy of the delegate, an empty cache), and its methods use no other
    repository = compat.config_repository.CachingConfigRepository
    assert list(inspect.signature(repository.__init__).parameters) == ["self", "delegate"]
    assert set(re.findall(r"self\.(\w+)(?:: [^=]+)? =", inspect.getsource(repository))) == {"delegate", "cache"}


def test_basic_sweeper():
    sweeper_class = compat.basic_sweeper_class()
    sweeper = sweeper_class(max_batch_size=None, params=None)
    assert callable(sweeper.validate_batch_is_legal)
    batches = sweeper_class.split_arguments(_parsed("a=1,2", "b=3"), None)
    assert [list(map(sorted, batch)) for batch in batches] == [[["a=1", "b=3"], ["a=2", "b=3"]]]


def test_job_outcome():
    """A failed member's JobReturn keeps its exception where job_outcome reads it; the public
    return_value raises it instead (what the launchers cannot use to record a member)."""
    from hydra.core.utils import JobReturn, JobStatus

    error = ValueError("the member's own error")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_outcome(failed) is error
    with pytest.raises(ValueError):
        failed.return_value  # noqa: B018
    assert compat.job_outcome(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)) == 0.5
