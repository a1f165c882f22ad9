"""Checks on a composed config that types alone cannot express (ranges, required components).

Runs before Hydra creates the run directory (see `preflight.py`), so a bad
value never leaves a directory or a half-written run behind. Hydra lets a `+key`
override add a key to a typed node, where nothing would read it: such keys are
refused here too (component nodes take any key; `check.py` binds them).
"""

import dataclasses
import math
import re
import sys
from glob import glob

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from frame.compat.omegaconf import child, is_none
from frame.config.schema import TrainConf
from frame.core.errors import FrameError, did_you_mean

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_NAME = re.compile(r"^[A-Za-z0-9_.+=,-]+$")

# key -> (test, what was expected)
_RULES = {
    "trainer.epochs": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.max_bad_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.checkpoint_every_n_epochs": (lambda v: v >= 0, "an integer >= 0 (0 = only last.pt and best.pt)"),
    "trainer.checkpoint_every_n_steps": (lambda v: v >= 0, "an integer >= 0 (0 = only at epoch ends)"),
    "trainer.checkpoint_every_n_minutes": (lambda v: v >= 0, "a number >= 0 (0 = after every epoch)"),
    "trainer.keep_last_checkpoints": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.devices": (lambda v: v >= 1, "an integer >= 1 (processes per node)"),
    "trainer.dist_timeout_s": (lambda v: v >= 1, "an integer >= 1 (seconds)"),
    "trainer.accumulate_grad_batches": (lambda v: v >= 1, "an integer >= 1 (batches per optimizer step)"),
    "trainer.limit_train_batches": (lambda v: v is None or v >= 1, "an integer >= 1, or null for every batch"),
    "trainer.limit_val_batches": (lambda v: v is None or v >= 1, "an integer >= 1, or null for every batch"),
    "trainer.overfit_batches": (lambda v: v >= 0, "an integer >= 0 (0 = off)"),
    "trainer.ema.decay": (
        lambda v: v is None or 0 < v < 1,
        "a number strictly between 0 and 1 (e.g. 0.999), or null for no EMA",
    ),
    "trainer.ema.every_n_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.ema.warmup_steps": (lambda v: v >= 0, "an integer >= 0"),
    "lr_scheduler.interval": (lambda v: v in ("epoch", "step"), "epoch or step (when lr_scheduler.step() runs)"),
    "trainer.grad_norm_clip": (lambda v: v is None or v > 0, "a number > 0, or null for no clipping"),
    "trainer.device": (lambda v: bool(_DEVICE.match(v)), "auto, cpu, cuda or cuda:N"),
    "data.split_ratio": (lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    "data.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "data.num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "name": (
        lambda v: bool(_NAME.match(v)) and v not in (".", ".."),
        "a plain directory name (letters, digits, _ . - + = ,)",
    ),
    "seed": (lambda v: 0 <= v < 2**32, "an integer >= 0 and < 2**32 (what numpy and torch seed with)"),
    "optimizer.lr": (
        lambda v: not isinstance(v, (int, float)) or (math.isfinite(v) and v >= 0),
        "a finite number >= 0",
    ),
    "predict.roi_size": (
        lambda v: v is None or (len(v) > 0 and all(s >= 1 for s in v)),
        "null or sizes >= 1 like [64,64,32]",
    ),
    "predict.overlap": (lambda v: 0 <= v < 1, "a number >= 0 and < 1"),
    "predict.postprocess": (lambda v: v in ("auto", "sigmoid", "argmax", "none"), "auto, sigmoid, argmax or none"),
}
_UNKNOWN = object()  # a value that only resolves in a run (`${hydra:...}` under `frame check`)
_COMPONENTS = ["model", "loss", "optimizer", "data.dataset"]


def validate(cfg: DictConfig) -> None:
    """Raise FrameError naming the first key whose value is out of range, missing, unresolvable or unknown."""
    for key in cfg:
        if key != "hydra":
            _resolve(cfg, key)
    _known_keys(cfg, "")
    _within_limits(OmegaConf.to_container(cfg, resolve=False), "")
    for key, (test, expected) in _RULES.items():
        value = _select(cfg, key)
        if value is not _UNKNOWN and not test(value):
            raise FrameError(f"{key}={value!r} is invalid: expected {expected}.", key=key)
    for key in _COMPONENTS:
        node = _select(cfg, key)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise FrameError(
                f"{key} must be a component with a _target_ (a dotted class path), got {node!r}."
                + _preset_hint(key, node),
                key=key,
            )


def _preset_hint(key: str, value) -> str:
    """`model: mlp` in a file's body sets a value; picking the preset `mlp` is a defaults-list entry."""
    if "." in key or not isinstance(value, str) or "." in value:
        return ""
    return (
        f" To pick the preset {value!r}, put `- override /{key}: {value}` in the file's defaults list, "
        f"or pass {key}={value} on the command line."
    )


def check_value(key: str, value) -> None:
    """A sweep member's value against the range rule of its key, if it has one (the sweep's own config
    was validated as a whole; each member's values are checked here before anything runs)."""
    if expected := unmet_rule(key, value):
        raise FrameError(
            f"the sweep value {key}={value!r} is invalid: expected {expected}; nothing was started.", key=key
        )


def unmet_rule(key: str, value) -> str:
    """What the range rule of `key` expects when `value` breaks it; '' when it holds or there is none.
    For one value set after the whole config was checked (a sweep member's, `frame eval`'s overrides)."""
    rule = _RULES.get(key)
    try:
        return rule[1] if rule is not None and not rule[0](value) else ""
    except TypeError:  # a type the key does not take: Hydra's own check says so
        return ""


def check_device(cfg: DictConfig) -> None:
    """Refuse a `trainer.device` this machine lacks, without importing torch (build checks again with torch).

    Only where the job runs: a SLURM submission host may have no GPU while its nodes do.
    """
    device = cfg.trainer.device
    if device == "mps" and sys.platform != "darwin":
        raise FrameError(
            "trainer.device=mps but this machine has no Apple GPU (MPS is macOS only); "
            "use trainer.device=cpu, cuda or auto.",
            key="trainer.device",
        )
    if device.startswith("cuda") and not glob("/dev/nvidia[0-9]*"):
        raise FrameError(
            f"trainer.device={device} but this machine has no NVIDIA GPU (no /dev/nvidia0); "
            "use trainer.device=cpu or auto.",
            key="trainer.device",
        )


def _resolve(cfg: DictConfig, key: str) -> None:
    try:
        value = cfg[key]
        if isinstance(value, (DictConfig, ListConfig)):
            OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        where = error.full_key or key
        raise FrameError(
            f"{where} has no value (??? in the config, or deleted with ~{where}): set it.", key=where
        ) from None
    except OmegaConfBaseException as error:
        if "HydraConfig was not set" not in str(error):  # `${hydra:...}`: resolves in the run, checked there
            raise FrameError(
                f"{error.full_key or key}: cannot resolve its value: {_first_line(error)}", key=error.full_key or key
            ) from None


def _known_keys(node, prefix: str) -> None:
    """A typed (schema) node holds only its fields; `+trainer.epoch=5` would be ignored without a word."""
    if isinstance(node, (DictConfig, ListConfig)) and (is_none(node) or OmegaConf.is_interpolation(node)):
        return
    if isinstance(node, ListConfig):
        for item in node:
            _known_keys(item, prefix)
        return
    if not isinstance(node, DictConfig):
        return
    schema = TrainConf if not prefix else OmegaConf.get_type(node)  # the root may be a plain copy (compose)
    fields = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
    for key in node:
        if not prefix and key == "hydra":
            continue
        if fields is not None and key not in fields:
            raise FrameError(
                f"{prefix}{key} is not a setting of {prefix.rstrip('.') or 'the config'}."
                f"{did_you_mean(str(key), fields)} Settings there: {', '.join(fields)}.",
                key=f"{prefix}{key}",
            )
        _known_keys(child(node, key), f"{prefix}{key}.")


MAX_DEPTH = 32  # nesting of a config beyond any component's (a model inside a wrapper inside a list ...)
_INT64 = (-(2**63), 2**63)  # what every consumer of an integer (torch, numpy, the DataLoader) takes


def _within_limits(node, key: str, depth: int = 0) -> None:
    """Refuse values no consumer takes, where they enter: an integer beyond 64 bits (a size, a count),
    a config nested deeper than `MAX_DEPTH`. The message names the key."""
    if depth > MAX_DEPTH:
        raise FrameError(f"{key}: nested more than {MAX_DEPTH} levels deep; no component takes that.", key=key)
    if isinstance(node, dict):
        for name, value in node.items():
            if not (depth == 0 and name == "hydra"):
                _within_limits(value, f"{key}.{name}" if key else str(name), depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _within_limits(value, f"{key}[{i}]", depth + 1)
    elif isinstance(node, int) and not isinstance(node, bool) and not _INT64[0] <= node < _INT64[1]:
        raise FrameError(f"{key}={node} is out of range: expected an integer that fits 64 bits.", key=key)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def _select(cfg, key):
    node = cfg
    try:
        for part in key.split("."):
            node = node[part]
    except (ConfigKeyError, TypeError):  # an optional key (optimizer.lr of an optimizer without one; no lr_scheduler)
        return _UNKNOWN
    except OmegaConfBaseException as error:
        if "HydraConfig was not set" in str(error):
            return _UNKNOWN
        raise
    return node
