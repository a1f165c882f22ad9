"""Composing configs without running Hydra's app: the one place frame uses Hydra's composition.

`compose` is what `frame check` and `frame run` check before anything runs: the config
`frame train` would run. `member_config` is one sweep member's config, made from the
sweep's own config, for the launchers (its run directory) and frame's sweeper (its
values' types). Both lean on Hydra internals (hydra-core is pinned below 1.4 for them).
"""

import copy
from pathlib import Path

from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from frame.compat.hydra import ConfigLoaderImpl, Hydra, create_config_search_path
from frame.config.app import CONFIG_MODULE, group_value_message
from frame.config.members import name as member_name
from frame.config.schema import register_configs
from frame.config.speedups import faster_composition
from frame.core.errors import FrameError


def compose(overrides: list[str], job=None, config_dir: str | None = None, keep_hydra: bool = False) -> DictConfig:
    """The config `frame train` (or `frame run JOB`) would run, composed without running anything.

    Sweep overrides (`a=1,2`) are left out: each sweep member is type-checked by Hydra. `keep_hydra`
    keeps the `hydra` node (its `runtime.choices`), as the pre-run check sees it.
    """
    register_configs()
    faster_composition()
    if job is not None:
        from frame.config.json_job import store  # JSON jobs only: the converter is not cheap to import

        overrides = [f"experiment={store(job)}", *overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    search_path = create_config_search_path(CONFIG_MODULE)
    if config_dir is not None:
        search_path.prepend("command-line", f"file://{Path(config_dir).resolve()}", SearchPathQuery(provider="main"))
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="frame", config_search_path=search_path)
    try:
        cfg = hydra.compose_config("train", plain, run_mode=RunMode.RUN, with_log_configuration=False)
    except ValueError as error:  # `lr_scheduler=null`: Hydra's bare ValueError, named and explained
        if (message := group_value_message(error, plain, hydra.config_loader)) is None:
            raise
        raise FrameError(message) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg if keep_hydra else without_hydra(cfg)


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's own config: its `hydra` node's `${hydra:...}` values resolve only inside a run."""
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
    if any(
        o.type != OverrideType.CHANGE
        or o.package is not None
        or o.is_hydra_override()
        or loader.repository.group_exists(o.key_or_group)
        for o in own
    ):
        return loader.load_sweep_config(launcher.config, overrides)
    config = copy.deepcopy(launcher.config)
    with read_write(config), read_write(config.hydra), open_dict(config.hydra):
        ConfigLoaderImpl._apply_overrides_to_config(own, config)
        config.hydra.overrides.task = overrides
        config.hydra.job.override_dirname = member_name(overrides, config)
    return config


DEFAULT_SWEEP_DIR = "outputs/${name}-sweep"  # conf/hydra/frame.yaml's hydra.sweep.dir


def name_sweep_by_its_overrides(config) -> None:
    """A sweep's directory carries the overrides the command fixes for every member that change the result,
    as a single run's does (`frame.config.rundir.run_suffix`): `-m optimizer.lr=0.1,0.01 trainer.epochs=5`
    sweeps in `outputs/organs-sweep+trainer.epochs=5`, so the same sweep command finds its sweep and a
    different one starts its own. Only frame's default `hydra.sweep.dir` (and none with `name=`); set as a
    Hydra override too, so that members composed again from the overrides (SLURM, frame's sweeper) get it.
    """
    from frame.compat.omegaconf import node_at, raw
    from frame.config.rundir import run_suffix

    if raw(node_at(config, "hydra.sweep.dir")) != DEFAULT_SWEEP_DIR:
        return
    suffix = run_suffix([o.input_line for o in _fixed_overrides(config)])
    if not suffix:
        return
    quoted = suffix.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = DEFAULT_SWEEP_DIR + suffix.replace("${", "\\${")
        config.hydra.overrides.hydra.append(f"hydra.sweep.dir='{DEFAULT_SWEEP_DIR}{quoted}'")


def _fixed_overrides(config) -> list:
    """The command line's overrides that every member of the sweep shares: not swept by `a=1,2` nor by the
    sweeper's `params` (a key both fixed and swept is swept: it names its members)."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()} | set(
        OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    )
    return [o for o in parsed if not o.is_sweep_override() and o.key_or_group not in swept]


def name_members_by_search(config) -> None:
    """Name a sweep's members by the swept keys alone: the keys the command line fixes for every member
    (`project=.`, `logger=[jsonl]`) join `hydra.job.config.override_dirname.exclude_keys`.

    The name stays a pure function of a member's own search values (the same command finds the same
    directories) and two members of one sweep differ in a swept value, so never share a directory.
    With nothing swept (`-m seed=1`), names keep every key: a member needs a directory of its own.
    Set on the sweep's config and as a Hydra override: `load_sweep_config` composes each member from
    the latter (on SLURM too), `member_config` copies the former.
    """
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    if not any(o.is_sweep_override() for o in parsed) and not OmegaConf.select(config, "hydra.sweeper.params"):
        return
    naming = config.hydra.job.config.override_dirname
    fixed = [o.key_or_group for o in _fixed_overrides(config) if o.key_or_group not in naming.exclude_keys]
    if not fixed:
        return
    keys = [*naming.exclude_keys, *fixed]
    with read_write(config.hydra), open_dict(config.hydra):
        naming.exclude_keys = keys
        config.hydra.overrides.hydra.append(
            "hydra.job.config.override_dirname.exclude_keys=[" + ",".join(f"'{k}'" for k in keys) + "]"
        )
