"""frame: experiment launcher.

JSON jobs (the seed format) or Hydra YAML in; a thin PyTorch training loop with
checkpoints, resume and tracking out. Importing `frame` is cheap: torch, MONAI
and W&B load only when a job runs.
"""

__version__ = "0.1.0"
