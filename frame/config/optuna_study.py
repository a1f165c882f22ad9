"""What an Optuna study of frame's is made of, shared by the sweeper (which asks trials) and its members
(which report to them): the storage a study lives in and the pruner `hydra.sweeper.pruner` names.

Storages are Optuna's public ones: an RDB URL (`sqlite:///...`) or `journal:<path>`, Optuna's journal
file with an open(2) lock, which works on NFS for members on several nodes. Optuna is imported only
when a study is opened, never by the command line.
"""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from frame.core.errors import FrameError

JOURNAL = "journal:"


def open_storage(spec: str):
    """The storage `spec` names: a journal file (`journal:<path>`) or an RDB URL (`sqlite:///...`)."""
    import optuna

    if spec.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = journal_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if spec.startswith("sqlite:///"):
        Path(spec[len("sqlite:///") :]).parent.mkdir(
            parents=True, exist_ok=True
        )  # SQLite makes the file, not its folder
    return optuna.storages.RDBStorage(spec)


def unreadable(spec: str, error: Exception) -> FrameError:
    """The answer to a study storage that Optuna cannot read: damaged, truncated, not a database, or held
    by another process. Nothing in it is changed or replaced."""
    where = journal_path(spec) if spec.startswith(JOURNAL) else spec.removeprefix("sqlite:///")
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return FrameError(
        f"the Optuna study in {where} cannot be read ({type(error).__name__}: {first}). It is damaged, or "
        f"another search holds it. It was left as it is: move it aside to start the search anew, or wait "
        f"for the other search to finish.",
        key="hydra.sweeper.storage",
    )


def journal_path(spec: str) -> Path:
    """`journal:/a/b.journal` or `journal:///a/b.journal` -> /a/b.journal."""
    path = spec[len(JOURNAL) :]
    return Path(path[2:] if path.startswith("///") else path)


def build_pruner(conf: Any):
    """The pruner `hydra.sweeper.pruner` configures (`_target_`: an Optuna pruner or a project's own);
    None: NopPruner (members still report their monitor every epoch)."""
    import optuna

    if conf is None:
        return optuna.pruners.NopPruner()
    return instantiated(conf, "hydra.sweeper.pruner", optuna.pruners.BasePruner)


def instantiated(conf: Any, key: str, kind: type, partial_ok: bool = False):
    """`conf` (a node with `_target_`) built, or exit 2 naming `key` and what it must be."""
    from hydra.utils import instantiate

    expected = f"optuna's {kind.__name__}"
    if not isinstance(conf, (dict, DictConfig)) or "_target_" not in conf:
        raise FrameError(f"{key}={conf!r}: expected a node with _target_ (a subclass of {expected}).")
    try:
        built = instantiate(conf, _convert_="all")
    except Exception as error:  # Hydra's InstantiationException: a target that does not import, a bad argument
        raise FrameError(f"{key}: cannot build {conf.get('_target_')}: {str(error).strip().splitlines()[0]}") from None
    built_class = getattr(built, "func", None) if partial_ok else None  # a functools.partial (_partial_: true)
    if not (isinstance(built, kind) or (isinstance(built_class, type) and issubclass(built_class, kind))):
        raise FrameError(f"{key}._target_={conf.get('_target_')} builds a {type(built).__name__}, not a {expected}.")
    return built
