"""Many sweep members at once, cheaply: checking their values and naming their run directories.

A member usually differs from its sweep's config only in values (`seed=3`, `optimizer.lr=0.1`).
Setting a value on a leaf (a ValueNode) fails or passes on the value and the leaf's type alone,
not on the other values, so a sweep's members need not be composed one by one (~0.1 s each,
11 s before a 1000-member array was submitted):

- `check_values` sets every distinct `key=value` of a batch once, on its leaf in one copy of
  the sweep's config (OmegaConf's type checks; Hydra's own message for a value that does not
  fit), and returns the members it cannot check that way;
- `DirPlanner` names each member's run directory on one working copy of the sweep's config:
  it sets `hydra.job.{num,id,override_dirname}` (and the member's values, where the
  directory names interpolate them), resolves `hydra.sweep.dir`/`subdir` and puts the values back.

A member that picks a config group, adds or deletes a key, sets `hydra.*`, or sets a
container is left to the caller to compose in full (`frame.config.compose.member_config`).
"""

import copy
import functools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf, ValueNode
from omegaconf.errors import OmegaConfBaseException

from frame.compat import omegaconf
from frame.compat.hydra import ConfigLoaderImpl, get_overrides_dirname
from frame.compat.omegaconf import node_at, raw, set_raw
from frame.config.validate import check_value

PRIMITIVE = (str, int, float, bool, type(None))
BY_NAME = ("${hydra:job.override_dirname}", "${hydra.job.override_dirname}")  # subdirs named by the overrides


# `key=number` as Hydra's grammar reads it (INT and FLOAT without `_` separators, no inf/nan)
_UNSIGNED = r"(?:0|[1-9][0-9]*)"
_POINT = rf"(?:{_UNSIGNED}\.[0-9]*|\.[0-9]+)"
_NUMBER = re.compile(
    rf"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)="
    rf"(?:([+-]?{_UNSIGNED})|([+-]?(?:{_POINT}|{_UNSIGNED})(?:[eE][+-]?[0-9]+)?))"
)


@functools.lru_cache(maxsize=1 << 16)
def parse(line: str) -> Override:
    """One override line parsed as Hydra's grammar reads it; `key=number` (the common swept line,
    1000 distinct ones in `seed=range(1000)`) without its parser (~1 ms a line)."""
    number = _NUMBER.fullmatch(line)
    if number is None:
        return _parser().parse_override(line)
    value = int(number[2]) if number[2] is not None else float(number[3])
    return Override(
        type=OverrideType.CHANGE, key_or_group=number[1], value_type=ValueType.ELEMENT, _value=value, input_line=line
    )


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()  # ~1 ms: it registers the grammar's functions


def name(overrides: Iterable[str], config) -> str:
    """`overrides` as `config` names a member (hydra.job.override_dirname: less its exclude_keys)."""
    naming = config.hydra.job.config.override_dirname
    return get_overrides_dirname(
        overrides=[parse(str(line)) for line in overrides],
        kv_sep=naming.kv_sep,
        item_sep=naming.item_sep,
        exclude_keys=naming.exclude_keys,
    )


class Members:
    """Sorts a sweep's members into value-only ones and the rest, for one sweep config."""

    def __init__(self, launcher) -> None:
        self.launcher = launcher
        self.base = launcher.config
        self.shared = set(self.base.hydra.overrides.task)  # already applied to the sweep's config
        self._leaf: dict[str, bool] = {}

    def own_values(self, overrides: Sequence[str]) -> list[Override] | None:
        """The member's own overrides when each sets a primitive on an existing leaf; None otherwise."""
        own = [parse(str(line)) for line in overrides if line not in self.shared]
        if all(self._is_value(o) for o in own):
            return own
        return None

    def _is_value(self, o: Override) -> bool:
        if o.type != OverrideType.CHANGE or o.package is not None or o.is_hydra_override():
            return False
        if o.key_or_group not in self._leaf:
            groups = self.launcher.hydra_context.config_loader.repository
            self._leaf[o.key_or_group] = not groups.group_exists(o.key_or_group) and isinstance(
                node_at(self.base, o.key_or_group), ValueNode
            )
        return self._leaf[o.key_or_group] and isinstance(o.value(), PRIMITIVE)


def check_values(launcher, batch: Sequence[Sequence[str]]) -> list[list[str]]:
    """Raise Hydra's ConfigCompositionException for a value of `batch` that does not fit its key; return
    the members that are not value-only (to compose in full)."""
    members = Members(launcher)
    distinct: dict[str, Override] = {}
    rest = []
    for overrides in batch:
        own = members.own_values(overrides)
        if own is None:
            rest.append(list(overrides))
        else:
            distinct.update((o.input_line, o) for o in own)  # pyright: ignore[reportCallIssue]
    if distinct:
        work = _writable_copy(launcher.config)
        for override in distinct.values():
            _set(work, override)
            check_value(override.key_or_group, override.value())
    return rest


def _set(config, override: Override) -> None:
    """Set a value-only override on its leaf (what Hydra's override code does for one, without its
    walk from the root); a value that does not fit raises Hydra's own error."""
    try:
        set_raw(node_at(config, override.key_or_group), override.value())
    except OmegaConfBaseException:
        ConfigLoaderImpl._apply_overrides_to_config([override], config)
        raise


def _writable_copy(config) -> DictConfig:
    work = copy.deepcopy(config)
    OmegaConf.set_readonly(work, False)
    OmegaConf.set_readonly(work.hydra, None)  # HydraConfig.set_config froze it
    return work


class DirPlanner:
    """Run directories of value-only members on one working copy of the sweep's config. Points
    `${hydra:...}` (HydraConfig) at that copy: the caller restores HydraConfig when done.

    Per member it sets the job's number, id and name (on their leaves) and the member's values
    (Hydra's override code) where `hydra.sweep.dir`/`subdir` interpolate them, and resolves
    those from parse trees made once (OmegaConf would parse them again for every member), the
    sweep dir only once when no member value can change it.
    """

    def __init__(self, launcher) -> None:
        self.members = Members(launcher)
        self.work = work = _writable_copy(launcher.config)
        naming = work.hydra.job.config.override_dirname
        self.naming = dict(kv_sep=naming.kv_sep, item_sep=naming.item_sep, exclude_keys=list(naming.exclude_keys))
        self.job = {key: node_at(work, f"hydra.job.{key}") for key in ("num", "id", "override_dirname")}
        self.sweep_dir, self.subdir = _resolver(work, "hydra.sweep.dir"), _resolver(work, "hydra.sweep.subdir")
        self.plans: dict[frozenset, tuple[str | None, bool]] = {}  # own keys -> (fixed sweep dir, values name dirs)
        if raw(node_at(work, "hydra.sweep.subdir")) in BY_NAME:  # frame's default: no resolution needed
            self.subdir = lambda: raw(self.job["override_dirname"])

    def run_dir(self, num: int, overrides: Sequence[str]) -> tuple[Path, Path] | None:
        """(absolute run dir, sweep dir) of a value-only member; None for a member to compose in full."""
        own = self.members.own_values(overrides)
        if own is None:
            return None
        work = self.work
        HydraConfig.instance().cfg = work  # what `${hydra:job.override_dirname}` reads (set_config would copy it)
        keys = frozenset(o.key_or_group for o in own)
        if keys not in self.plans:  # what these keys change: a sweep dir that they do not is resolved once
            varies = depends_on(work, "hydra.sweep.dir", keys | {f"hydra.job.{key}" for key in self.job})
            uses_values = depends_on(work, "hydra.sweep.dir", keys) or depends_on(work, "hydra.sweep.subdir", keys)
            self.plans[keys] = (None if varies else self.sweep_dir(), uses_values)
        fixed_dir, uses_values = self.plans[keys]
        own = own if uses_values else []  # values that name no directory are not set
        saved = [(o.key_or_group, raw(node_at(work, o.key_or_group))) for o in own]
        try:
            for override in own:
                _set(work, override)
            set_raw(self.job["num"], num)
            set_raw(self.job["id"], num)
            set_raw(
                self.job["override_dirname"],
                get_overrides_dirname(overrides=[parse(str(line)) for line in overrides], **self.naming),
            )
            sweep_dir = fixed_dir or self.sweep_dir()
            return Path(os.path.abspath(Path(sweep_dir) / self.subdir())), Path(sweep_dir)
        finally:
            for key, value in reversed(saved):
                set_raw(node_at(work, key), value)


_REFERENCE = re.compile(r"\$\{([^${}]*)\}")


def depends_on(config, key: str, changing: set[str]) -> bool:
    """Whether the value at `key` may change with the `changing` keys: it interpolates one, directly
    or through other values (True when unsure: a resolver other than hydra, now and oc.env, a
    relative or nested interpolation, a container)."""
    todo, seen = [key], set()
    while todo:
        key = todo.pop()
        if key in changing:
            return True
        if key in seen:
            continue
        seen.add(key)
        node = node_at(config, key)
        if not isinstance(node, ValueNode):
            return True
        text = raw(node)
        if not isinstance(text, str) or "${" not in text:
            continue
        references = _REFERENCE.findall(text)
        if len(references) != text.count("${"):
            return True
        for reference in references:
            resolver, colon, argument = reference.partition(":")
            if not colon and reference and not reference.startswith("."):
                todo.append(reference)
            elif resolver == "hydra":
                todo.append(f"hydra.{argument.strip()}")
            elif resolver not in ("now", "oc.env"):
                return True
    return False


def _resolver(config, key: str):
    """A function that returns the string value of `key` in `config` as it is now (its interpolation
    parsed once)."""
    parent_key, _, last = key.rpartition(".")
    return omegaconf.resolver(node_at(config, parent_key), node_at(config, key), last)
