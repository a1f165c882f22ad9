"""Composing configs without running Hydra's app: the one place frame uses Hydra's composition.

`compose` is what `frame check` and `frame run` check before anything runs: the config
`frame train` would run. `member_config` is one sweep member's config, made from the
sweep's own config, for the launchers (its run directory) and frame's sweeper (its
values' types). Both lean on Hydra internals (hydra-core is pinned below 1.4 for them).
"""

import copy
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from frame.config.app import CONFIG_MODULE
from frame.config.json_job import store
from frame.config.schema import register_configs


def compose(overrides: list[str], job=None, config_dir: str | None = None) -> DictConfig:
    """The config `frame train` (or `frame run JOB`) would run, composed without running anything.

    Sweep overrides (`a=1,2`) are left out: each sweep member is type-checked by Hydra.
    """
    register_configs()
    if job is not None:
        overrides = [f"experiment={store(job)}", *overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    search_path = create_config_search_path(CONFIG_MODULE)
    if config_dir is not None:
        search_path.prepend("command-line", f"file://{Path(config_dir).resolve()}", SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="frame", config_search_path=search_path)
    try:
        cfg = hydra.compose_config("train", plain, run_mode=RunMode.RUN, with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def member_config(launcher, overrides: list[str]):
    """A member's config for planning: the sweep's config with the member's values set.

    Composing a member from scratch (Hydra's `load_sweep_config`) costs ~0.12 s, which made
    submitting a 64-member array take 8 s. The sweep's own config was composed with every
    override the members share (`experiment=...`, fixed values); a member whose other
    overrides only set values (`key=value`, the common sweep) differs from it in those values
    alone, so this applies them with Hydra's own override code to a copy (~10 ms). Members
    that pick other config groups, add or delete keys, or set `hydra.*` are composed in full.
    """
    loader = launcher.hydra_context.config_loader
    parsed = OverridesParser.create().parse_overrides(overrides)
    shared = set(launcher.config.hydra.overrides.task)
    own = [o for o in parsed if o.input_line not in shared]
    if any(o.type != OverrideType.CHANGE or o.package is not None or o.is_hydra_override()
           or loader.repository.group_exists(o.key_or_group) for o in own):
        return loader.load_sweep_config(launcher.config, overrides)
    config = copy.deepcopy(launcher.config)
    with read_write(config), read_write(config.hydra), open_dict(config.hydra):
        ConfigLoaderImpl._apply_overrides_to_config(own, config)
        config.hydra.overrides.task = overrides
        naming = config.hydra.job.config.override_dirname
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=parsed, kv_sep=naming.kv_sep, item_sep=naming.item_sep, exclude_keys=naming.exclude_keys)
    return config
