"""Hydra (hydra-core, capped below 1.4 for these) past its public API: every such import of frame's is
here, with what frame needs of it; tests/compat/test_hydra.py pins each (named below).

- `ConfigLoaderImpl._apply_overrides_to_config`: overrides applied to a composed config with Hydra's
  own type checks, without composing again (a sweep member's values, ~10 ms instead of ~0.12 s; a
  checkpoint's stored config with the user's overrides). Pin: test_apply_overrides.
- `get_overrides_dirname`: a member's directory name exactly as `${hydra:job.override_dirname}` makes
  it. Pin: test_override_dirname.
- `Hydra.create_main_hydra2`, `create_config_search_path`: frame's config composed with Hydra's search
  path and plugins outside a running app (`frame check`, `frame run`). Pin: test_compose.
- `internal_utils`: `_run_hydra`, `get_args_parser`, `run_and_report`, `create_automatic_config_search_path`,
  which frame.config.app calls and routes (user errors exit 2, the user's config dir first).
  Pin: test_app_entry_points.
- `config_repository.CachingConfigRepository.__init__`, `defaults_list._create_interpolation_map`: what
  frame.config.speedups replaces for speed. Pin: test_speedup_targets.
- `basic_sweeper_class()`: frame's default sweeper wraps Hydra's BasicSweeper and replaces its
  `validate_batch_is_legal`. Pin: test_basic_sweeper.
- `job_outcome(ret)`: `JobReturn._return_value`, a member's result or the exception it raised (the
  public `return_value` re-raises that exception; launchers need it as a value to record and report).
  Pin: test_job_outcome.
"""

import hydra._internal.utils as internal_utils
from hydra._internal import config_repository, defaults_list
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path

__all__ = [
    "internal_utils",
    "config_repository",
    "defaults_list",
    "ConfigLoaderImpl",
    "get_overrides_dirname",
    "Hydra",
    "create_config_search_path",
    "basic_sweeper_class",
    "job_outcome",
]


def job_outcome(ret):
    """What a member's Hydra job returned, or the exception it raised, without raising it."""
    return ret._return_value


def basic_sweeper_class() -> type:
    """Hydra's BasicSweeper as its module defines it now (Hydra's plugin scan re-executes plugin modules,
    and a class kept from before fails in its `super()` call)."""
    from hydra._internal.core_plugins import basic_sweeper

    return basic_sweeper.BasicSweeper
