"""`frame check`: everything about a job that can be known without training it.

For every component (`_target_` node) of the composed config: the target
exists, the params bind to its constructor (no unknown one, no required one
missing; what the loop supplies at run time is allowed for), and for the
dataset that its `root` exists and that it can provide the `labels` asked for
(a dataset class may declare them as a literal `LABELS = (...)`).

Targets are read with `ast` (`frame.config.source`), so checking a job that
names torch, torchvision or MONAI classes imports none of them; a target that
cannot be read that way (compiled, dynamic) is imported.

`frame run` and `frame train` run the same checks before Hydra creates the run
directory, so a bad job leaves nothing behind.
"""

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from frame.config import source
from frame.config.app import composition_message
from frame.config.compose import compose, without_hydra
from frame.config.project import use_project
from frame.config.walk import FRAME_KEYS, components
from frame.core.errors import FrameError, did_you_mean

_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

# Targets that run code from the file they read (pickle), refused as components, where Hydra
# (1.3) refuses none: target -> (the param that makes it safe, its safe value, its default), or
# None where no param does. One list, so `frame check`, the pre-run check and a checkpoint's stored
# config (frame.trained.load) refuse the same; a target is compared by what it resolves to
# (`refused_as`), so a re-export or an alias of one of these is refused too.
UNPICKLING = {
    "torch.load": ("weights_only", True, None),
    "torch.serialization.load": ("weights_only", True, None),
    "numpy.load": ("allow_pickle", False, False),
    "numpy.lib.npyio.load": ("allow_pickle", False, False),
    "torch.hub.load": None,
    "torch.hub.load_state_dict_from_url": None,
    "torch.package.PackageImporter": None,
    "pickle.load": None,
    "pickle.loads": None,
    "pickle.Unpickler": None,
    "_pickle.load": None,
    "_pickle.loads": None,
    "dill.load": None,
    "dill.loads": None,
    "cloudpickle.load": None,
    "cloudpickle.loads": None,
    "joblib.load": None,
    "pandas.read_pickle": None,
    "shelve.open": None,
}
# Targets that run a command or source code they are given: never a component.
CODE_RUNNING = (
    "os.system",
    "os.popen",
    "os.execv",
    "os.execvp",
    "os.spawnv",
    "subprocess.run",
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.getoutput",
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "builtins.__import__",
    "runpy.run_path",
    "runpy.run_module",
    "code.InteractiveInterpreter",
    "pty.spawn",
)
_REFUSED = {**UNPICKLING, **dict.fromkeys(CODE_RUNNING)}
_FOLLOW_DEPTH = 12


@dataclass
class Problem:
    key: str  # the Hydra key at fault
    message: str


@dataclass
class Checked:
    key: str
    target: str
    where: str  # file:line of the definition, or "imported"
    note: str = ""  # what was not checked


class CheckError(FrameError):
    """One or more problems; `problems` holds them all."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(f"{p.key}: {p.message}" for p in problems), key=problems[0].key)
        self.problems = problems


def check_config(cfg: DictConfig) -> list[Checked]:
    """Check every component of a composed config.

    Returns:
        What was checked, component by component.

    Raises:
        CheckError: listing every problem found.
    """
    use_project(cfg.get("project"))
    problems: list[Problem] = []
    checked = [_check_component(key, node, runtime, problems) for key, node, runtime in components(cfg)]
    problems += _merged_presets(problems, OmegaConf.select(cfg, "hydra.runtime.choices") or {})
    problems += _check_dataset(cfg, problems)
    problems += _check_metrics(cfg)
    if problems:
        raise CheckError(problems)
    return checked


def _check_component(key: str, node: DictConfig, runtime, problems: list[Problem]) -> Checked:
    target = node._target_
    if refused := _unpickling(target, node):
        problems.append(Problem(f"{key}._target_", refused))
        return Checked(key, str(target), "", "refused")
    found = source.locate(target) if isinstance(target, str) else None
    if found is not None:
        sig, where = source.signature(found), found.where
    else:
        obj = _import(target, key, problems)
        if obj is None:
            return Checked(key, str(target), "", "not found")
        sig, where = source.inspect_signature(obj), "imported"
    if sig is None:
        return Checked(key, target, where, "params not checked (constructor not readable)")
    given = [k for k in node.keys() if k not in _HYDRA_KEYS and k not in FRAME_KEYS.get(key, ())]
    names = sig.names
    short = target.rsplit(".", 1)[-1]
    if not sig.var_keyword:
        for name in given:
            if name not in names:
                problems.append(
                    Problem(
                        f"{key}.{name}",
                        f"{short} takes no parameter '{name}'."
                        f"{did_you_mean(name, names)} It takes: {', '.join(names) or 'none'}.",
                    )
                )
    partial = bool(node.get("_partial_", False))
    if partial and not isinstance(runtime, int):
        return Checked(key, target, where, "missing params not checked (_partial_: filled in by the caller)")
    supplied = set(given) | (set(runtime) if isinstance(runtime, tuple) else set())
    positional = len(node.get("_args_", None) or []) + (runtime if partial and isinstance(runtime, int) else 0)
    for i, param in enumerate(sig.params):
        if param.required and i >= positional and param.name not in supplied:
            problems.append(Problem(key, f"{short} needs '{param.name}' (it has no default)."))
    return Checked(key, target, where)


def _merged_presets(problems: list[Problem], choices) -> list[Problem]:
    """A hint where a component has several unknown params and its group picked a preset: an experiment
    that names another `_target_` for `model:` merges into the preset's node (Hydra's rule), keeping its
    params, which is the first thing a project that brings its own model runs into."""
    hints = []
    for key, group in (
        ("model", "model"),
        ("loss", "loss"),
        ("optimizer", "optimizer"),
        ("lr_scheduler", "lr_scheduler"),
        ("data.dataset", "data"),
    ):
        unknown = [p for p in problems if p.key.rpartition(".")[0] == key and "takes no parameter" in p.message]
        preset = choices.get(group)
        if (
            unknown
            and preset not in (None, "null")
            and (len(unknown) >= 2 or _preset_sets(group, preset, key, [p.key.rpartition(".")[2] for p in unknown]))
        ):
            hints.append(
                Problem(
                    key,
                    f"if these params come from the preset {group}={choices[group]} (an experiment's "
                    f"`{group}:` merges into it), replace the preset: put `- override /{group}: null` in "
                    "the experiment's defaults list.",
                )
            )
    return hints


def _preset_sets(group: str, preset: str, key: str, names: list[str]) -> bool:
    """Whether frame's preset `group=preset` sets every param in `names` of the component at `key`: then a
    single unknown param (`labels` of synthetic_organs under a dataset of one's own) is a leftover, not a typo."""
    import importlib.resources

    import yaml

    try:
        node = yaml.safe_load((importlib.resources.files("frame.conf") / group / f"{preset}.yaml").read_text())
    except (OSError, yaml.YAMLError):  # a preset of the user's own: two unknown params make the hint
        return False
    for part in key.split(".")[1:]:
        node = node.get(part) if isinstance(node, dict) else None
    return isinstance(node, dict) and all(name in node for name in names)


def _unpickling(target, node: DictConfig) -> str:
    """Why `target` is refused (it can run code from a file, or a command), or ''."""
    name = refused_as(target) if isinstance(target, str) else None
    if name is None:
        return ""
    safe = _REFUSED[name]
    if safe is not None and node.get(safe[0], safe[2]) == safe[1]:
        return ""
    if name in CODE_RUNNING:
        what = "it runs a command or source code it is given"
    else:
        what = "it can run arbitrary code stored in what it loads (a pickle, or a hub repository)"
    remedy = f" Set {safe[0]}: {str(safe[1]).lower()}, or load" if safe else " Load"
    alias = "" if name == target else f" (it is {name})"
    return f"{target}{alias} is refused: {what}.{remedy} the file inside your own component."


def refused_targets(config) -> list[Problem]:
    """Every refused `_target_` anywhere in a config (a checkpoint's stored one: any node, any depth)."""
    found = []

    def walk(node, key: str) -> None:
        if isinstance(node, dict):
            if why := _unpickling(node.get("_target_"), node):
                found.append(Problem(f"{key}._target_" if key else "_target_", why))
            for name, value in node.items():
                walk(value, f"{key}.{name}" if key else str(name))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{key}[{i}]")

    walk(OmegaConf.to_container(config, resolve=False) if isinstance(config, (DictConfig, ListConfig)) else config, "")
    return found


def refused_as(target: str) -> str | None:
    """The refused target `target` resolves to (itself, a re-export or an alias of it), or None.

    Compared by definition, read from source (`canonical`, no import), and by object where the
    target's module is imported already (what `frame eval` finds after importing torch)."""
    by_definition = _refused_definitions()
    found = by_definition.get(canonical(target))
    if found is None and (obj := _imported_object(target)) is not None:
        found = next((name for name in _REFUSED if _imported_object(name) is obj), None)
    return found


def canonical(dotted: str, _depth: int = 0) -> str:
    """The dotted name `dotted` is defined under, following re-exports (`from x import y as z`) and
    aliases (`z = x.y`) as far as source reading goes; `dotted` itself where it cannot be followed
    (a compiled module such as `_pickle`, a dynamic attribute)."""
    parts = dotted.split(".")
    if _depth > _FOLLOW_DEPTH or len(parts) < 2:
        return dotted
    module = source.module_file(".".join(parts[:-1]))
    namespace = source.namespace(module) if module is not None else None
    if namespace is None:
        return dotted
    name = parts[-1]
    binding = namespace.bindings.get(name)
    if binding is None:
        found = source.lookup(module, name)  # from a `from x import *`
        return f"{found.module.name}.{found.name}" if found is not None else dotted
    kind = binding[0]
    if kind == "from" and not (binding[1] == module.name and binding[2] == name):
        return canonical(f"{binding[1]}.{binding[2]}", _depth + 1)
    if kind == "module":
        return binding[1]
    expression = ast.Name(id=binding[1]) if kind == "alias" else binding[1].value if kind == "value" else None
    if expression is not None and (spelled := _spelled(module.name, namespace, expression)):
        return canonical(spelled, _depth + 1)
    return dotted


def _spelled(module: str, namespace, expr) -> str | None:
    """The absolute dotted name of a name or attribute expression written in `module` (`pickle.load`
    after `import pickle`, `ld` after `from pickle import load as ld`, `eval`)."""
    import builtins

    attributes = []
    while isinstance(expr, ast.Attribute):
        attributes.insert(0, expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    binding = namespace.bindings.get(expr.id)
    if binding is None:
        head = f"builtins.{expr.id}" if hasattr(builtins, expr.id) else None
    elif binding[0] == "module":
        head = binding[1]
    elif binding[0] == "from":
        head = f"{binding[1]}.{binding[2]}"
    else:
        head = f"{module}.{expr.id}"
    return ".".join([head, *attributes]) if head else None


def _refused_definitions() -> dict[str, str]:
    """canonical definition -> the refused name it belongs to (computed once per process)."""
    if not _DEFINITIONS:
        for name in _REFUSED:
            _DEFINITIONS.setdefault(name, name)
            _DEFINITIONS.setdefault(canonical(name), name)
    return _DEFINITIONS


_DEFINITIONS: dict[str, str] = {}


def _imported_object(dotted: str):
    """The object `dotted` names when its module is imported already (nothing is imported here), else None."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            obj = module
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
                if obj is None:
                    return None
            return obj
    return None


def _import(target, key: str, problems: list[Problem]):
    if not isinstance(target, str) or "." not in target:
        problems.append(Problem(f"{key}._target_", f"{target!r} is not a dotted path such as torch.optim.Adam."))
        return None
    try:
        return get_object(target)
    except Exception as error:  # ImportError, AttributeError, or the module's own failure
        problems.append(Problem(f"{key}._target_", f"cannot import {target}: {error}"))
        return None


def _check_metrics(cfg: DictConfig) -> list[Problem]:
    """What the run refuses before its first epoch that the config alone shows (`frame check` must never pass
    a job `frame run` refuses): two evaluators reporting one key, a `trainer.monitor` no evaluator reports, a
    ReduceLROnPlateau `mode` against `trainer.monitor_mode`."""
    found, owner, known = [], {}, True
    for name, node in cfg.evaluators.items():
        key = evaluator_key(name, node)
        if key is None:
            known = False  # a project's evaluator: its keys are what its compute() returns
        elif key in owner:
            found.append(
                Problem(
                    f"evaluators.{name}",
                    f"evaluators.{owner[key]} and evaluators.{name} both report "
                    f"'{key}'; give one of them another name (a library metric's key is its `key` param).",
                )
            )
        else:
            owner[key] = name
    monitor = str(cfg.trainer.monitor)
    metrics = {"val/loss", "train/epoch_time_s", *(f"val/{key}" for key in owner)}
    if known and monitor not in metrics and not any(monitor.startswith(f"{m}/") for m in metrics):
        found.append(
            Problem(
                "trainer.monitor",
                f"{monitor} is not among the metrics the evaluators report: "
                f"{', '.join(sorted(metrics))}.{did_you_mean(monitor, metrics)}",
            )
        )
    scheduler = cfg.get("lr_scheduler")
    if isinstance(scheduler, DictConfig) and str(scheduler.get("_target_", "")).endswith("ReduceLROnPlateau"):
        mode, wanted = scheduler.get("mode"), getattr(cfg.trainer.monitor_mode, "value", cfg.trainer.monitor_mode)
        if mode is not None and str(getattr(mode, "value", mode)) != str(wanted):
            found.append(
                Problem(
                    "lr_scheduler.mode",
                    f"{mode} contradicts trainer.monitor_mode={wanted}: "
                    f"ReduceLROnPlateau would cut the rate while {monitor} improves. Drop it (it follows "
                    f"monitor_mode) or set both alike.",
                )
            )
    return found


def evaluator_key(name: str, node) -> str | None:
    """The key an evaluator reports under, where the config shows it: a library metric's `key` (default: its
    name in `evaluators`), a frame evaluator's literal `KEY`; None for others."""
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        return None
    target = node._target_
    if target.startswith(("torchmetrics.", "monai.metrics.")) or target.endswith("LibraryMetric"):
        return str(node.get("key") or name)
    found = source.locate(target)
    literal = source.class_literal(found, "KEY") if found is not None else None
    return str(node.get("key") or literal) if literal is not None else None


def _check_dataset(cfg: DictConfig, problems: list[Problem]) -> list[Problem]:
    found: list[Problem] = []
    node = cfg.data.dataset
    if not isinstance(node, DictConfig) or any(p.key.startswith("data.dataset._target_") for p in problems):
        return found
    root = node.get("root")
    if isinstance(root, str) and not node.get("download", False) and not Path(root).expanduser().exists():
        found.append(Problem("data.dataset.root", f"{root} does not exist."))
    labels = node.get("labels")
    if labels is not None:
        provided = _dataset_labels(node._target_)
        if provided is not None:
            missing = [str(label) for label in labels if label not in provided]
            for label in missing:
                found.append(
                    Problem(
                        "data.dataset.labels",
                        f"{node._target_.rsplit('.', 1)[-1]} cannot provide "
                        f"'{label}'.{did_you_mean(label, provided)} It provides: {', '.join(provided)}.",
                    )
                )
    return found


def _dataset_labels(target: str) -> list[str] | None:
    found = source.locate(target)
    if found is not None:
        labels = source.class_literal(found, "LABELS")
    elif target.split(".")[0] in sys.modules:
        labels = getattr(_import(target, "", []), "LABELS", None)
    else:
        labels = None
    return [str(label) for label in labels] if isinstance(labels, (list, tuple)) else None


def check_job(job=None, overrides=(), config_dir: str | None = None) -> tuple[DictConfig, list[Checked]]:
    """Compose (a JSON job and) overrides, validate, check; errors name the JSON file and key when there is one.

    Raises:
        FrameError: every problem found, one per line.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from frame.config.validate import validate

    try:
        cfg = compose(list(overrides), job, config_dir, keep_hydra=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise FrameError(composition_message(error)) from None
    try:
        validate(cfg)
        checked = check_config(cfg)  # with the `hydra` node: its choices name the presets in messages
        return without_hydra(cfg), checked
    except CheckError as error:
        if job is None:
            raise
        raise FrameError("\n".join(job.error(p.message, p.key) for p in error.problems)) from None
    except FrameError as error:
        raise FrameError(job.error(str(error), error.key) if job is not None else str(error)) from None
