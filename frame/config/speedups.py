"""Three costs of Hydra 1.3's composition that frame's config tree makes large, taken off.

`frame train --cfg job` composes ~20 config files where the smallest Hydra app composes ~8, and
Hydra's cost per file is where it spends: measured with cProfile, per composition of frame's
`train.yaml` (scripts/bench/startup.py has the end-to-end figures):

- `_create_interpolation_map` builds a DictConfig of every group choice made so far for every
  config loaded, to resolve `${...}` in defaults lists that almost never have one (~15%);
- `CachingConfigRepository` deep-copies the whole ConfigStore (Hydra's schema, every plugin's
  config, frame's) at the start of each composition; the copy is only ever read (~9%);
- OmegaConf reads YAML with PyYAML's pure-Python parser (~12%) where PyYAML has libyaml's at hand.

Each replacement gives the same configs, and a YAML mistake names the same file, line and column
(libyaml words a syntax error its own way): tests/config/test_speedups.py composes with and
without them. They change Hydra's and OmegaConf's classes for the whole
process, the way `frame.config.app.launch` already routes Hydra's error reporting; hydra-core is
pinned below 1.4 for such internals.
"""

import copy

import yaml
from hydra.core.config_store import ConfigStore

from frame.compat.hydra import config_repository, defaults_list
from frame.compat.omegaconf import yaml_loader_owner as omegaconf_utils

_hydra_interpolation_map = defaults_list._create_interpolation_map
_omegaconf_loader = omegaconf_utils.get_yaml_loader()  # a new class on every call: one is enough


def faster_composition() -> None:
    """Install the three replacements (once; later calls change nothing)."""
    defaults_list._create_interpolation_map = _interpolation_map_when_needed
    config_repository.CachingConfigRepository.__init__ = _caching_repository_init
    omegaconf_utils.get_yaml_loader = _yaml_loader


def _interpolation_map_when_needed(overrides, defaults, self_added):
    """Hydra's map of known choices, built only for a defaults list that has an interpolation
    (its one caller reads the map only for such an entry)."""
    if any(not d.is_override() and d.is_interpolation() for d in defaults):
        return _hydra_interpolation_map(overrides, defaults, self_added)
    return None


def _caching_repository_init(self, delegate) -> None:
    """Hydra's copy of the repository, sharing the ConfigStore: `ConfigStore.load` copies every
    node it hands out, and the repository copy only replaces its own list of sources."""
    store = ConfigStore.instance()
    self.delegate = copy.deepcopy(delegate, {id(store): store})
    self.cache = {}


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # PyYAML built without libyaml: the same parser  # pyright: ignore[reportGeneralTypeIssues]
    """OmegaConf's loader on libyaml: its tables (float and path rules, no timestamps) and its
    refusal of duplicate keys; only the parser differs."""

    yaml_implicit_resolvers = _omegaconf_loader.yaml_implicit_resolvers
    yaml_constructors = _omegaconf_loader.yaml_constructors

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            if key_node.tag != yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                continue
            if key_node.value in keys:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value}",
                    key_node.start_mark,
                )
            keys.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _yaml_loader():
    return _Loader
