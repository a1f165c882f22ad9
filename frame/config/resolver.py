"""Bare component names -> dotted paths: each name resolved once, the answer recorded in the config.

A JSON job names its parts the seed's way (`"name": "OrganNet25D"`, `"Adam"`,
`"CropAroundBrainStem"`); the resolver turns each into the dotted path that
goes into the config as `_target_`, once. The tiers, in order:

1. **the user's project**, in the seed's layout (`PROJECT_FILES` below);
2. **frame's built-ins** (`frame.training.models`, `frame.training.losses`, `frame.data.transforms`,
   `frame.data.synthetic`, `frame.data.datalist`, `frame.training.evaluators`, `frame.tracking.*`). They come
   second because they are the seed framework's own parts (its `Transpose` and
   `StandardScaleTensor` take `dim_1, dim_2`, MONAI's `Transpose` takes `indices`),
   and because a project can still shadow any of them;
3. **torchvision** (models, datasets, transforms);
4. **MONAI** (networks.nets, losses, optimizers, data, apps, transforms, metrics);
5. **torch** (`torch.nn`, `torch.optim`, `torch.optim.lr_scheduler`, `torch.utils.data`; torchmetrics
   for evaluators).

The first tier that knows the name wins. Two *different* definitions in the
winning tier are an error that lists both (write the dotted path you mean).
A name found nowhere is an error with a did-you-mean over every tier. A name
with a dot is a dotted path already and is used as is.

Nothing is imported: project files and library packages are read with `ast`
(`frame.config.source`), so resolving never costs the seconds that importing
torch, torchvision or MONAI does. A library module that cannot be read that way
is imported, and only when the earlier tiers missed.
"""

import ast
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from frame.config import source
from frame.config.project import display
from frame.core.errors import FrameError, did_you_mean

KINDS = ("model", "loss", "optimizer", "lr_scheduler", "dataset", "transform", "evaluator", "metric_logger")

# Tier 1: where a project keeps each kind (the seed's layout), relative to the project root.
PROJECT_FILES = {
    "model": "src/Models/*.py",
    "loss": "src/losses.py",
    "dataset": "src/Datasets/*.py",
    "transform": "src/Data/transforms.py",
    "evaluator": "src/Evaluators/*.py",
    "metric_logger": "src/MetricLoggers/*.py",
}

# Tiers 2-5: modules whose public names are searched, per kind.
TIERS = {
    "frame": {
        "model": ["frame.training.models"],
        "loss": ["frame.training.losses"],
        "dataset": ["frame.data.synthetic", "frame.data.datalist"],
        "transform": ["frame.data.transforms"],
        "evaluator": ["frame.training.evaluators"],
        "metric_logger": ["frame.tracking.*"],
    },
    "torchvision": {
        "model": ["torchvision.models"],
        "dataset": ["torchvision.datasets"],
        "transform": ["torchvision.transforms"],
    },
    "MONAI": {
        "model": ["monai.networks.nets"],
        "loss": ["monai.losses"],
        "optimizer": ["monai.optimizers"],
        "lr_scheduler": ["monai.optimizers.lr_scheduler"],
        "dataset": ["monai.data", "monai.apps"],
        "transform": ["monai.transforms"],
        "evaluator": ["monai.metrics"],
    },
    "torch": {
        "model": ["torch.nn"],
        "loss": ["torch.nn"],
        "optimizer": ["torch.optim"],
        "lr_scheduler": ["torch.optim.lr_scheduler"],
        "dataset": ["torch.utils.data"],
        "evaluator": [
            "torchmetrics",
            "torchmetrics.classification",
            "torchmetrics.regression",
            "torchmetrics.segmentation",
        ],
    },
}
TIER_ORDER = ("project", "frame", "torchvision", "MONAI", "torch")


class ResolveError(FrameError):
    """A name that resolves nowhere, or to two different definitions in one tier."""


@dataclass(frozen=True)
class Match:
    tier: str
    target: str  # the dotted path that goes into `_target_`
    where: str  # file:line, for messages
    function: bool = False  # a function rather than a class


@dataclass
class Resolution:
    name: str
    kind: str
    target: str
    matches: list[Match] = field(default_factory=list)  # every tier that knows the name, in order

    @property
    def others(self) -> list[Match]:
        return [m for m in self.matches if m.target != self.target]

    @property
    def function(self) -> bool:
        """Whether the target is a function (a dotted path: looked up in its source)."""
        if self.matches:
            return self.matches[0].function
        found = source.locate(self.target)
        return found is not None and isinstance(found.node, (ast.FunctionDef, ast.AsyncFunctionDef))


class Resolver:
    """Resolves names for one project (None: no project tier)."""

    def __init__(self, project: Path | None = None):
        self.project = Path(project).resolve() if project else None

    def resolve(self, name: str, kind: str) -> Resolution:
        """The winning dotted path for `name`; raises ResolveError naming the places searched."""
        _check_kind(kind)
        if "." in name:
            return Resolution(name, kind, name)
        winner = None
        for tier in TIER_ORDER:
            found = self._tier_matches(tier, name, kind, may_import=winner is None)
            if winner is None and len(found) > 1:
                listed = " and ".join(f"{m.target} ({m.where})" for m in found)
                raise ResolveError(
                    f"'{name}' is defined more than once in {tier_label(tier)}: {listed}. "
                    f'Write the dotted path of the one you mean, e.g. "{found[0].target}".'
                )
            if winner is None and found:
                winner = Resolution(name, kind, found[0].target)
            if winner is not None:
                winner.matches += found  # later tiers too, for `frame which` and hints
        if winner is not None:
            return winner
        raise ResolveError(
            f"'{name}' is not a {kind.replace('_', ' ')} in {self.places(kind)}."
            f"{did_you_mean(name, self.candidates(kind))}"
        )

    def matches(self, name: str, kind: str) -> list[Match]:
        """Every definition of `name` for `kind`, in tier order (what `frame which` prints)."""
        _check_kind(kind)
        return [m for tier in TIER_ORDER for m in self._tier_matches(tier, name, kind)]

    def candidates(self, kind: str) -> set[str]:
        """Every name `kind` can resolve, over all tiers (for did-you-mean)."""
        names = set()
        for tier in TIER_ORDER:
            for _, module in self._modules(tier, kind):
                names |= self._names(tier, module)
        return names

    def places(self, kind: str) -> str:
        parts = []
        for tier in TIER_ORDER:
            if tier == "project":
                if self.project is not None and kind in PROJECT_FILES:
                    parts.append(f"the project ({self.project / PROJECT_FILES[kind]})")
            elif kind in TIERS[tier]:
                parts.append(f"{tier} ({', '.join(TIERS[tier][kind])})")
        return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1] if parts else "no tier"

    # ---- one tier -----------------------------------------------------------------------------

    def _tier_matches(self, tier: str, name: str, kind: str, may_import: bool = True) -> list[Match]:
        found: dict[str, Match] = {}  # definition site -> match: a re-export is the same definition
        for dotted, module in self._modules(tier, kind, may_import):
            if name not in self._names(tier, module):
                continue
            if tier in ("project", "frame"):
                node = source.defined_names(module)[name]
                where = f"{display(module.path)}:{node.lineno}"
            elif isinstance(module, source.ModuleFile):
                definition = source.lookup(module, name)
                node = definition.node if definition else None
                where = definition.where if definition else dotted
            else:  # an imported module
                node, where = None, dotted
            function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or (
                node is None and inspect.isfunction(getattr(module, name, None))
            )
            found.setdefault(where, Match(tier, f"{dotted}.{name}", where, function))
        return list(found.values())

    def _modules(self, tier: str, kind: str, may_import: bool = True):
        """(dotted module name, ModuleFile or imported module) for every module `tier` searches for `kind`."""
        if tier == "project":
            if self.project is None or kind not in PROJECT_FILES:
                return
            for path in sorted(self.project.glob(PROJECT_FILES[kind])):
                if not path.name.startswith("_"):
                    dotted = ".".join(path.relative_to(self.project).with_suffix("").parts)
                    yield dotted, source.file_module(path, dotted)
            return
        for dotted in TIERS[tier].get(kind, ()):
            if dotted.endswith(".*"):  # every module of a package (frame.tracking.*)
                package = source.module_file(dotted[:-2])
                for directory in package.search if package else ():
                    for path in sorted(directory.glob("*.py")):
                        if not path.name.startswith("_"):
                            yield f"{package.name}.{path.stem}", source.file_module(path, f"{package.name}.{path.stem}")
                continue
            module = source.module_file(dotted)
            if module is not None and source.exported_names(dotted) is not None:
                yield dotted, module
            elif may_import:
                imported = optional_module(dotted)  # not readable as source: ask the module itself
                if imported is not None:
                    yield dotted, imported

    @staticmethod
    def _names(tier: str, module) -> set[str]:
        if tier in ("project", "frame"):
            return set(source.defined_names(module))  # what the file defines, not what it imports
        if isinstance(module, source.ModuleFile):
            return source.exported_names(module.name) or set()
        return {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))}


def optional_module(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ImportError:
        return None  # that library is not installed: the tier is empty


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise FrameError(f"unknown kind '{kind}'; kinds are {', '.join(KINDS)}.{did_you_mean(kind, KINDS)}")


def tier_label(tier: str) -> str:
    return "the project" if tier == "project" else tier
