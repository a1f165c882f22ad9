"""Pins of what frame needs from OmegaConf's internals (frame/compat/omegaconf.py): an OmegaConf release that
changes one fails the test named beside its use there."""

import dataclasses

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf, ValueNode
from omegaconf.errors import ValidationError

from frame.compat import omegaconf as compat


def _config():
    return OmegaConf.create(
        {
            "a": {"b": 3, "ref": "${a.b}", "none": None, "missing": "???"},
            "link": "${a}",
            "off": None,
            "name": "x-${a.b}",
        }
    )


def test_node_at():
    config = _config()
    leaf = compat.node_at(config, "a.ref")
    assert isinstance(leaf, ValueNode) and compat.raw(leaf) == "${a.b}"  # as written, not resolved
    assert isinstance(compat.node_at(config, "a"), DictConfig)
    assert compat.node_at(config, "link.b") is None  # through an interpolation: not walked
    assert compat.node_at(config, "off.b") is None  # through None
    assert compat.node_at(config, "a.nope") is None  # an absent key
    assert compat.raw(compat.child(config.a, "missing")) == "???"


@dataclasses.dataclass
class _Typed:
    n: int = 1


def test_raw():
    config = OmegaConf.structured(_Typed)
    node = compat.node_at(config, "n")
    compat.set_raw(node, 7)
    assert config.n == 7 and compat.raw(node) == 7
    with pytest.raises(ValidationError):  # set with its type's validation
        compat.set_raw(node, "seven")
    assert config.n == 7


def test_is_none():
    config = _config()
    assert compat.is_none(compat.node_at(config, "a.none"))
    assert not compat.is_none(compat.node_at(config, "a"))


def test_resolver():
    config = _config()
    name = compat.resolver(config, compat.node_at(config, "name"), "name")
    assert name() == "x-3"
    compat.set_raw(compat.node_at(config, "a.b"), 4)  # resolved as the config is now, parsed once
    assert name() == "x-4"
    plain = compat.resolver(config.a, compat.node_at(config, "a.b"), "b")
    assert plain() == "4"


def test_yaml_loader_owner():
    loader = compat.yaml_loader_owner.get_yaml_loader()
    assert issubclass(loader, yaml.SafeLoader) or hasattr(loader, "construct_mapping")
    assert yaml.load("a: 1", Loader=loader) == {"a": 1}
