"""frame: experiment launcher.

JSON jobs (the seed format) or Hydra YAML in; a thin PyTorch training loop with
checkpoints, resume and tracking out. Importing `frame` is cheap: torch, MONAI
and W&B load only when a job runs.
"""

from frame.version import __version__

__all__ = ["Runner", "__version__"]


def __getattr__(name: str):
    """`from frame import Runner` without paying for it on `import frame`."""
    if name == "Runner":
        from frame.runner import Runner

        return Runner
    raise AttributeError(f"module 'frame' has no attribute {name!r}")
