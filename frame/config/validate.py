"""Checks on a composed config that types alone cannot express (ranges, required components).

Runs before Hydra creates the run directory (see `preflight.py`), so a bad
value never leaves a directory or a half-written run behind.
"""

import re

from omegaconf import DictConfig

from frame.errors import FrameError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_NAME = re.compile(r"^[A-Za-z0-9_.+=,-]+$")

# key -> (test, what was expected)
_RULES = {
    "trainer.epochs": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.max_bad_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.checkpoint_every_n_epochs": (lambda v: v >= 0, "an integer >= 0 (0 = only last.pt and best.pt)"),
    "trainer.checkpoint_every_n_steps": (lambda v: v >= 0, "an integer >= 0 (0 = only at epoch ends)"),
    "trainer.keep_last_checkpoints": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.devices": (lambda v: v >= 1, "an integer >= 1 (processes per node)"),
    "trainer.dist_timeout_s": (lambda v: v >= 1, "an integer >= 1 (seconds)"),
    "trainer.grad_norm_clip": (lambda v: v is None or v > 0, "a number > 0, or null for no clipping"),
    "trainer.device": (lambda v: bool(_DEVICE.match(v)), "auto, cpu, cuda or cuda:N"),
    "data.split_ratio": (lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    "data.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "data.num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "name": (lambda v: bool(_NAME.match(v)) and v not in (".", ".."), "a plain directory name (letters, digits, _ . - + = ,)"),
}
_COMPONENTS = ["model", "loss", "optimizer", "data.dataset"]


def validate(cfg: DictConfig) -> None:
    """Raise FrameError naming the first key whose value is out of range."""
    for key, (test, expected) in _RULES.items():
        value = _select(cfg, key)
        if not test(value):
            raise FrameError(f"{key}={value!r} is invalid: expected {expected}.", key=key)
    for key in _COMPONENTS:
        node = _select(cfg, key)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise FrameError(f"{key} must be a component with a _target_ (a dotted class path), got {node!r}.", key=key)


def _select(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node
