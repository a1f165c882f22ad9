"""`import monai` without Optuna.

`import monai` imports every MONAI module, and Auto3DSeg's `monai.apps.auto3dseg.hpo_gen` runs
`optional_import("optuna")` at module level: where Optuna is installed (hydra-optuna-sweeper
needs it) that brings alembic and SQLAlchemy too, 0.7 s of every training start, for an HPO
helper that only checks `has_optuna` when it is used. `defer_optuna` makes MONAI's package
initialisation see a stand-in `optuna` module that imports the real one on first attribute use;
once MONAI is imported the stand-in leaves `sys.modules`, so a later `import optuna` (the user's,
an Optuna sweep's) is the real import. Where Optuna is imported already (an Optuna sweep runs its
members in its own process), MONAI gets the real module as before.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types


def defer_optuna() -> None:
    """Until MONAI is first imported in this process, watch for it (a no-op once it is, or without Optuna)."""
    if "monai" in sys.modules or any(isinstance(f, _MonaiFinder) for f in sys.meta_path):
        return
    if "optuna" in sys.modules or importlib.util.find_spec("optuna") is None:
        return
    sys.meta_path.insert(0, _MonaiFinder())


class _MonaiFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands `monai`'s own spec on, with its loader wrapped, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "monai":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("monai")
        if spec is not None and spec.loader is not None:
            spec.loader = _StandInWhileLoading(spec.loader)
        return spec


class _StandInWhileLoading(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        stand_in = None if "optuna" in sys.modules else _optuna_stand_in()
        if stand_in is not None:
            sys.modules["optuna"] = stand_in
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = module.__spec__.loader = self.loader  # monai's own loader from here on
            if stand_in is not None and sys.modules.get("optuna") is stand_in:
                del sys.modules["optuna"]


def _optuna_stand_in() -> types.ModuleType:
    """A module that imports Optuna when an attribute is asked of it and answers from the real one."""
    stand_in = types.ModuleType("optuna", "imports Optuna on first use (frame.training.monai_import)")
    stand_in.__file__ = importlib.util.find_spec("optuna").origin  # MONAI refuses a module without one

    def __getattr__(name: str):
        if sys.modules.get("optuna") is stand_in:
            del sys.modules["optuna"]
        return getattr(importlib.import_module("optuna"), name)

    stand_in.__getattr__ = __getattr__
    return stand_in
