"""frame: experiment launcher.

JSON jobs (the seed format) or Hydra YAML in; a thin PyTorch training loop with
checkpoints, resume and tracking out. Importing `frame` is cheap: torch, MONAI
and W&B load only when a job runs.
"""

from frame.version import __version__

__all__ = ["Runner", "load_model", "load_run", "__version__"]


def __getattr__(name: str):
    """`from frame import Runner` (or `load_model`, `load_run`) without paying for it on `import frame`."""
    if name == "Runner":
        from frame.runner import Runner

        return Runner
    if name in ("load_model", "load_run"):
        from frame import trained

        return getattr(trained, name)
    raise AttributeError(f"module 'frame' has no attribute {name!r}")
