"""OmegaConf (capped below 2.4 for these) past its public API: every such use of frame's is here, with what
frame needs of it; tests/compat/test_omegaconf.py pins each (named below).

OmegaConf's public API reads a config resolved; frame's sweep planning and key checks need its nodes as
written (an interpolation's text, a None or `???` node without reading through it), thousands of times a
sweep, so they walk nodes directly.

- `node_at(config, key)`: the node at a dotted key, unresolved (`_get_node`, `_is_none`, `_is_missing`,
  `_is_interpolation` on the way). Pin: test_node_at.
- `raw(node)`, `set_raw(node, value)`: a leaf's value as written, and setting it with its type's
  validation (`_value`, `_set_value`): a sweep member's values set on one working copy. Pin: test_raw.
- `is_none(node)`: a container node set to None (`_is_none`; `OmegaConf.is_none` was removed in 2.1).
  Pin: test_is_none.
- `child(node, key)`: a container's child node, without resolving it (`_get_node`). Pin: test_node_at.
- `resolver(parent, node, key)`: a function that resolves `node` (an interpolation) as it is now, its
  text parsed once (`grammar_parser.parse`, `_resolve_interpolation_from_parse_tree`): a sweep's
  directories for thousands of members. Pin: test_resolver.
- `yaml_loader_owner`: the module whose `get_yaml_loader` OmegaConf calls to read YAML
  (`omegaconf._utils`), which frame.config.speedups replaces with libyaml's loader. Pin:
  test_yaml_loader_owner.
"""

from omegaconf import DictConfig
from omegaconf import _utils as yaml_loader_owner
from omegaconf.grammar_parser import parse as parse_interpolation

__all__ = ["node_at", "raw", "set_raw", "is_none", "child", "resolver", "yaml_loader_owner"]


def node_at(config, key: str):
    """The node at dotted `key`, unresolved; None when a step on the way is not a plain mapping."""
    node = config
    for part in key.split("."):
        if not isinstance(node, DictConfig) or node._is_none() or node._is_missing() or node._is_interpolation():
            return None
        node = node._get_node(part, validate_access=False)
    return node


def raw(node):
    return node._value()


def set_raw(node, value) -> None:
    node._set_value(value)


def is_none(node) -> bool:
    return node._is_none()


def child(node, key):
    return node._get_node(key)


def resolver(parent, node, key: str):
    """A function that returns the string value of `node` (child `key` of `parent`) as it is now."""
    if not node._is_interpolation():
        return lambda: str(node._value())
    tree = parse_interpolation(node._value())
    return lambda: str(
        parent._resolve_interpolation_from_parse_tree(
            parent=parent, value=node, key=key, parse_tree=tree, throw_on_resolution_failure=True, memo=set()
        )._value()
    )
