"""Optional dependencies (pyproject's extras): a feature whose package is missing says which extra
to install, exit 2, instead of an ImportError's traceback."""

import importlib
from types import ModuleType

from frame.core.errors import FrameError

# frame's name on the package index (`pip install frame` is an unrelated project); the package is `frame`
DISTRIBUTION = "frame-launcher"

# module -> (extra, the package pip installs)
EXTRAS = {
    "optuna": ("optuna", "optuna"),
    "matplotlib": ("plot", "matplotlib"),
    "nibabel": ("nifti", "nibabel"),
    "safetensors": ("export", "safetensors"),
    "tensorboard": ("tensorboard", "tensorboard"),
}


def require(module: str, feature: str) -> ModuleType:
    """`module` imported, or FrameError naming `feature` and the pip command for its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra, package = EXTRAS[module.split(".")[0]]
        raise FrameError(
            f"{feature} needs {package}, which is not installed: {pip_extra(extra)} (or pip install {package})."
        ) from error


def pip_extra(extra: str) -> str:
    """The pip command that installs frame's `extra`."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
