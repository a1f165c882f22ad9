"""Refuse to resume a checkpoint that the changed config makes meaningless.

A checkpoint stores the resolved config it was trained with. Before resuming,
that config and the current one are compared key by key:

- a change to the model, the data (what the items are and how they are split
  and batched), the seed, the kind of optimizer or scheduler, or the world size
  means the checkpoint belongs to a different run: resuming is refused with the
  list of changes, unless `force_resume=true`;
- any other change (more epochs, logging cadence, evaluators, workers) is
  allowed and listed in the log. The optimizer's and scheduler's own settings
  come from their saved state, so the log says so when those changed.
"""

import logging

from omegaconf import OmegaConf

from frame.core.errors import FrameError

log = logging.getLogger("frame")

# A change to one of these key paths, or to anything under them, makes a checkpoint meaningless...
MEANINGFUL_TREES = ("model", "data", "seed", "world_size", "optimizer.param_groups")  # groups: the saved state's layout
# ...except to these, which change how items are loaded, not what they are.
HARMLESS = ("data.num_workers", "data.preload", "data.test")  # data.test: evaluated after training only
# The kind of optimizer and scheduler (or having a scheduler at all); their settings are allowed to change.
MEANINGFUL_KEYS = (
    "optimizer._target_",
    "lr_scheduler",
    "lr_scheduler._target_",
    "optimizer.norm_weight_decay",
    "optimizer.bias_weight_decay",
)  # these two split the groups
# Keys that say how to run the command, not what the run is.
IGNORED = ("name", "resume", "fresh", "force_resume")
_ABSENT = "(absent)"


class ResumeRefused(FrameError):
    """The config changed in a way that makes the checkpoint meaningless."""


def check_resume(saved: dict, config_yaml: str, world_size: int, force: bool) -> None:
    """Compare a checkpoint's config (and world size) with the current ones.

    Args:
        saved: the loaded checkpoint (`config`, `data.world_size`, `_path`, `state`).
        config_yaml: the current resolved config.
        world_size: the current number of training processes.
        force: resume even when the change is meaningful (`force_resume=true`).

    Raises:
        ResumeRefused: a meaningful change and not `force`; the message lists every change.
    """
    old = {
        **flatten(OmegaConf.to_container(OmegaConf.create(saved["config"]))),
        "world_size": saved["data"]["world_size"],
    }
    new = {**flatten(OmegaConf.to_container(OmegaConf.create(config_yaml))), "world_size": world_size}
    changes = diff(old, new)
    refused = [line for key, line in changes if is_meaningful(key)]
    allowed = [line for key, line in changes if not is_meaningful(key)]
    where = f"{saved.get('_path', 'the checkpoint')} (epoch {saved['state']['epoch']}, step {saved['state']['step']})"
    if refused and not force:
        raise ResumeRefused(
            f"the config changed since {where} was written, in ways that make it another run:\n"
            + "".join(f"  {line}\n" for line in refused)
            + (
                "other changes (allowed on their own):\n" + "".join(f"  {line}\n" for line in allowed)
                if allowed
                else ""
            )
            + "Undo these changes to continue the run; start a new one with name=<new> or fresh=true "
            "(moves the old run aside); or resume anyway with force_resume=true (the weights must still "
            "fit the model; optimizer and scheduler state are kept only when their class is unchanged)."
        )
    if refused:
        log.warning("force_resume=true: resuming %s despite:\n%s", where, "\n".join(f"  {line}" for line in refused))
    if allowed:
        log.info("resuming %s with changed settings:\n%s", where, "\n".join(f"  {line}" for line in allowed))
    state_wins = [
        key for key, _ in changes if key.startswith(("optimizer.", "lr_scheduler.")) and not is_meaningful(key)
    ]
    if state_wins:
        log.warning(
            "the optimizer and scheduler continue from their saved state, so these changes have no effect: %s",
            ", ".join(state_wins),
        )


def is_meaningful(key: str) -> bool:
    def under(trees):
        return any(key == tree or key.startswith((tree + ".", tree + "[")) for tree in trees)

    inner_kind = key.startswith("lr_scheduler.schedulers[") and key.endswith("._target_")  # a chained scheduler's part
    return key in MEANINGFUL_KEYS or inner_kind or (under(MEANINGFUL_TREES) and not under(HARMLESS))


def diff(old: dict, new: dict) -> list[tuple[str, str]]:
    """(key, 'key: old -> new') for every key path whose value differs, in a stable order. A key absent on
    one side and null on the other is no change: a key frame added since the checkpoint, at its null default
    (`data.val.dataset`), leaves an older run resumable."""
    return [
        (key, f"{key}: {_show(old.get(key, _ABSENT))} -> {_show(new.get(key, _ABSENT))}")
        for key in sorted(set(old) | set(new))
        if key not in IGNORED and old.get(key) != new.get(key)
    ]


def flatten(node, prefix: str = "") -> dict:
    """{'a.b': 1, 'a.c[0].d': 2, 'a.e': [1, 2]}: dicts by key, lists of containers by index."""
    if isinstance(node, dict):
        if not node and prefix:
            return {prefix: {}}
        items = {}
        for key, value in node.items():
            items.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(node, list) and any(isinstance(value, (dict, list)) for value in node):
        items = {}
        for index, value in enumerate(node):
            items.update(flatten(value, f"{prefix}[{index}]"))
        return items
    return {prefix: node}


def _show(value) -> str:
    return value if value == _ABSENT else repr(value) if isinstance(value, str) else str(value)
