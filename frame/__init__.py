"""frame: experiment launcher.

JSON jobs (the seed format) or Hydra YAML in; a thin PyTorch training loop with
checkpoints, resume and tracking out. Importing `frame` is cheap: torch, MONAI
and W&B load only when a job runs.

The package's folders are its layers, lowest first: `core` (base), `config`, `data`,
`tracking` and `training` (the runtime), `trained` (a finished run read back),
`launch` (the run corridor, JSON jobs, sweeps), `cli`.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from frame.core.version import __version__

__all__ = ["Runner", "load_model", "load_run", "__version__"]

# Modules that moved when the package was laid out in layers. A run's saved config names its
# components by dotted path (`frame.evaluators.Dice`) and users' code imports them
# (`frame.metrics.LibraryMetric`): both keep working, served by the module at its new place.
MOVED = {
    "frame.errors": "frame.core.errors",
    "frame.exits": "frame.core.exits",
    "frame.ranks": "frame.core.ranks",
    "frame.signals": "frame.core.signals",
    "frame.version": "frame.core.version",
    "frame.runinfo": "frame.core.run_record",
    "frame.runlock": "frame.core.run_lock",
    "frame.build": "frame.training.build",
    "frame.loop": "frame.training.loop",
    "frame.state": "frame.training.state",
    "frame.checkpoint": "frame.training.checkpoint",
    "frame.evaluators": "frame.training.evaluators",
    "frame.metrics": "frame.training.metrics",
    "frame.losses": "frame.training.losses",
    "frame.models": "frame.training.models",
    "frame.distributed": "frame.training.distributed",
    "frame.predict": "frame.trained.predict",
    "frame.export": "frame.trained.export",
    "frame.results": "frame.trained.runs",
    "frame.plots": "frame.trained.plots",
    "frame.run": "frame.launch.corridor",
    "frame.runner": "frame.launch.json_jobs",
    "frame.sweep": "frame.launch.sweep",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module at its new one (the same module object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
    sys.meta_path.append(_Moved())


def __getattr__(name: str):
    """`from frame import Runner` (or `load_model`, `load_run`) without paying for it on `import frame`."""
    if name == "Runner":
        from frame.launch.json_jobs import Runner

        return Runner
    if name in ("load_model", "load_run"):
        from frame.trained import load

        return getattr(load, name)
    raise AttributeError(f"module 'frame' has no attribute {name!r}")
