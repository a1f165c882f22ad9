"""The user's project: where it is, and making its `src.*` modules importable.

A seed project keeps its jobs in `config/` and its components under `src/`
(`src/Models/OrganNet25D.py`, ...). Resolved targets are dotted paths such as
`src.Models.OrganNet25D.OrganNet25D`, so every process that instantiates them
(the training process, a SLURM worker, a DDP rank) puts the project root first
on `sys.path`; the root travels in the config as the top-level key `project`.
"""

import importlib
import sys
from pathlib import Path

from frame.core.errors import FrameError

_active: str | None = None  # the root use_project() put on sys.path


def find_root(job: str | Path | None = None, explicit: str | Path | None = None) -> Path:
    """The project root: `explicit` when given, else the folder holding the job's `config/`, else the cwd.

    Raises:
        FrameError: an explicit root that is not a directory.
    """
    if explicit is not None:
        root = Path(explicit).expanduser().resolve()
        if not root.is_dir():
            raise FrameError(f"--project {explicit}: not a directory.")
        return root
    if job is not None:
        for parent in Path(job).resolve().parents:
            if parent.name == "config":
                return parent.parent
    return Path.cwd().resolve()


def use_project(root: str | Path | None) -> None:
    """Make `src.*` of the project at `root` importable in this process.

    The root goes first on `sys.path`. When another project was active, its
    root leaves `sys.path` and its already imported `src` modules are
    forgotten, so two projects' `src.Models.X` never mix in one process.
    """
    global _active
    if not root:
        return
    root = str(Path(root).resolve())
    if _active != root:
        if _active is not None:
            while _active in sys.path:
                sys.path.remove(_active)
            for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
                del sys.modules[name]
        _active = root
    if sys.path[:1] != [root]:
        while root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    importlib.invalidate_caches()


def display(path: str | Path) -> str:
    """`path` relative to the current directory when it lies inside it, for messages."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
