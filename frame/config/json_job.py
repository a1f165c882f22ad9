"""Seed JSON jobs -> Hydra experiment configs: JSON stops here, nothing past this module knows its keys.

A job file in the seed's format (docs/reference/json-jobs.md; `//` and `/* */` comments and
trailing commas allowed) becomes a `# @package _global_` experiment whose
components carry explicit `_target_`s. Nothing past this module knows a JSON
key name. The mapping (also in docs/reference/json-jobs.md):

    name                          -> name            (default: the file's stem)
    resume                        -> resume
    preload                       -> data.preload
    seed                          -> seed
    model {name, ...}             -> model {_target_, ...}
    training.epochs, detect_bad_gradients, grad_norm_clip (any trainer.* key)
                                  -> trainer.<key>
    training.split_ratio, batch_size
                                  -> data.split_ratio, data.batch_size
    training.loss {name, ...}     -> loss {_target_, ...}
    training.optimizer {name, learning_rate, ...}
                                  -> optimizer {_target_, _partial_: true, lr, ...}
    training.lr_scheduler {name, ...}
                                  -> lr_scheduler {_target_, _partial_: true, ...}; a chained one's
                                     `schedulers: [{name, ...}]` -> [{_target_, _partial_: true, ...}]
    training.dataset {name, root, labels, num_workers, transforms, keys, sample_transforms,
                      label_transforms, batch_transforms, ...}
                                  -> data.dataset {_target_, root, labels, ...}, data.num_workers,
                                     data.transforms, data.keys, data.sample_transforms,
                                     data.label_transforms, data.batch_transforms
    training.validation_dataset {name, root, ..., transforms, sample_transforms, label_transforms}
                                  -> data.val {dataset: {_target_, root, ...}, transforms,
                                     sample_transforms, label_transforms} (name: the training
                                     dataset's by default); training.test_dataset -> data.test alike
    evaluators [{name, ...}]      -> evaluators {<snake_name>: {_target_, ...}}; a torchmetrics or
                                     MONAI metric -> {_target_: frame.training.metrics.LibraryMetric,
                                     metric: {_target_, ...}, activation, threshold, labels, key,
                                     discrete, post_pred, post_label}
    {"name": ...} inside params   -> a nested component {_target_, ...} (a transform under a
                                     key with "transform" in it, else its parent's kind)
    metric_loggers [{name, ...}]  -> logger {<snake_name>: {_target_, ...}}
    wandb_project_name            -> logger.wandb.project
    wandb_prediction_examples     -> logger.wandb.prediction_examples
    wandb_api_key                 -> the environment variable WANDB_API_KEY of the
                                     training process; never a config value or a file

A relative `dataset.root` is relative to the project root (`${project}/...`).
A dataset without `name` is the one dataset in the project's `src/Datasets/`.
"""

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from frame.config.project import display, find_root
from frame.config.resolver import KINDS, Resolution, ResolveError, Resolver
from frame.config.schema import TrainerConf
from frame.core.errors import FrameError, did_you_mean

# Component groups of train.yaml that a JSON job sets in full: their presets must not merge into it.
_REPLACED_GROUPS = ("model", "loss", "optimizer", "lr_scheduler", "data", "trainer", "evaluators")
_TOP_KEYS = (
    "name",
    "resume",
    "preload",
    "seed",
    "wandb_project_name",
    "wandb_prediction_examples",
    "wandb_api_key",
    "model",
    "training",
    "evaluators",
    "metric_loggers",
)
_TRAINER_KEYS = tuple(f.name for f in fields(TrainerConf))
_TRAINING_KEYS = _TRAINER_KEYS + (
    "split_ratio",
    "batch_size",
    "loss",
    "optimizer",
    "lr_scheduler",
    "dataset",
    "validation_dataset",
    "test_dataset",
)
WANDB_TARGET = "frame.tracking.wandb.WandbLogger"
_CALLED_LATER = ("transform", "loss")  # kinds that may be plain functions
_RESERVED_SLOTS = ("wandb", "jsonl", "console")  # logger names frame's presets use
_SUFFIXES = (".json", ".json5", ".jsonc")
_DATA_KEYS = (
    "num_workers",
    "transforms",
    "keys",
    "sample_transforms",
    "label_transforms",
    "batch_transforms",
)  # data.*, not the dataset's
_LIBRARY_METRICS = ("monai.metrics.", "torchmetrics.")
LIBRARY_METRIC = "frame.training.metrics.LibraryMetric"
# LibraryMetric's own params, the rest are the metric's
_ADAPTER_KEYS = ("activation", "threshold", "labels", "key", "discrete", "post_pred", "post_label")


class JobError(FrameError):
    """A mistake in a JSON job; the message starts with the file (and line, or key)."""


@dataclass
class JsonJob:
    """A converted JSON job.

    Attributes:
        path: the JSON file.
        project: the project root its names were resolved in.
        experiment: the Hydra experiment (plain dicts and lists; `defaults` first).
        env: environment for the training process (WANDB_API_KEY); never written anywhere.
        keys: Hydra key -> JSON key, so later errors can name the key the user wrote.
        resolutions: JSON key of a component -> how its name was resolved.
    """

    path: Path
    project: Path
    experiment: dict
    env: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    resolutions: dict[str, Resolution] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.path.stem

    def json_key(self, hydra_key: str | None) -> str | None:
        """The JSON key a Hydra key came from (longest known prefix), or None."""
        if not hydra_key:
            return None
        for prefix in sorted(self.keys, key=len, reverse=True):
            if hydra_key == prefix or hydra_key.startswith(prefix + ".") or hydra_key.startswith(prefix + "["):
                return self.keys[prefix] + hydra_key[len(prefix) :]
        return None

    def error(self, message: str, hydra_key: str | None = None) -> str:
        """`message` prefixed with the file and the JSON key behind `hydra_key`, when known."""
        json_key = self.json_key(hydra_key)
        if json_key is None:
            return message
        if hydra_key and message.startswith(hydra_key):
            message = message[len(hydra_key) :].lstrip(":= ")
        hint = self._hint(hydra_key)
        return f"{display(self.path)}: {json_key}: {message}{hint}"

    def _hint(self, hydra_key: str) -> str:
        """For a problem inside a component named by a bare name: what else that name could have meant."""
        json_key = self.json_key(hydra_key) or ""
        owners = [k for k in self.resolutions if json_key == k or json_key.startswith((k + ".", k + "["))]
        resolution = self.resolutions[max(owners, key=len)] if owners else None
        if resolution is None or not resolution.others:
            return ""
        others = ", ".join(f"{m.target} ({m.tier})" for m in resolution.others)
        return f" ('{resolution.name}' resolved to {resolution.target}; it also names {others})"

    def to_yaml(self, command: str | None = None) -> str:
        """The experiment as a YAML file, with the header that says how to run it."""
        from omegaconf import OmegaConf

        run = command or f"frame train experiment={self.stem}"
        header = (
            "# @package _global_\n"
            f"# Converted from {display(self.path)} by `frame convert`; run it with:\n"
            f"#   {run}\n"
            "# Names were resolved once (project, frame, torchvision, MONAI, torch); edit freely.\n"
        )
        if "WANDB_API_KEY" in self.env:
            header += "# wandb_api_key is not written here: export WANDB_API_KEY before training.\n"
        return header + OmegaConf.to_yaml(OmegaConf.create(self.experiment))


# ---- reading ----------------------------------------------------------------------------------------


def load(path: str | Path) -> dict:
    """Parse a JSON job (comments and trailing commas allowed).

    Raises:
        JobError: a missing file, a syntax error (file:line:column), a duplicate key, or a non-object.
    """
    import json5

    path = Path(path)
    if not path.is_file():
        raise JobError(f"{display(path)}: no such job file.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise JobError(f"{display(path)}:{line}: invalid UTF-8 (byte {error.start}); save the job as UTF-8.") from None
    try:
        job = json5.loads(text, allow_duplicate_keys=False)
    except RecursionError:
        raise JobError(f"{display(path)}: nested too deep to be a job.") from None
    except ValueError as error:
        message = str(error)
        located = re.match(r"^<string>:(\d+) (.*) at column (\d+)$", message)
        if located:
            line, what, column = located.groups()
            raise JobError(f"{display(path)}:{line}:{column}: {what}.") from None
        raise JobError(f"{display(path)}: {message}.") from None
    if not isinstance(job, dict):
        raise JobError(f"{display(path)}: a job is a JSON object {{...}}, got {type(job).__name__}.")
    return job


def is_job_file(arg: str) -> bool:
    return arg.endswith(_SUFFIXES) and "=" not in arg


# ---- converting -------------------------------------------------------------------------------------


def convert(path: str | Path, project: str | Path | None = None) -> JsonJob:
    """Load and convert one JSON job; names are resolved in the project (found from the job's path).

    Raises:
        JobError: any mistake in the job, naming the file and the JSON key.
    """
    path = Path(path)
    raw = load(path)
    root = find_root(path, project)
    job = JsonJob(path=path.resolve(), project=root, experiment={})
    _Converter(job, Resolver(root)).run(raw)
    _validate_values(job)
    return job


class _Converter:
    def __init__(self, job: JsonJob, resolver: Resolver):
        self.job, self.resolver = job, resolver

    def fail(self, json_key: str, message: str):
        raise JobError(f"{display(self.job.path)}: {json_key}: {message}")

    def run(self, raw: dict) -> None:
        self.unknown_keys(raw, _TOP_KEYS, "", elsewhere=("training", _TRAINING_KEYS))
        out = {"defaults": [{f"override /{group}": None} for group in _REPLACED_GROUPS]}
        out["name"] = self.value(raw, "name", "name", default=self.job.stem)
        out["project"] = str(self.job.project)
        for key in ("seed", "resume"):
            if key in raw:
                out[key] = self.value(raw, key, key)
        if "model" not in raw:
            self.fail("model", 'missing: a job names its model, e.g. "model": {"name": "UNet", ...}.')
        out["model"] = self.component(raw["model"], "model", "model", "model")

        training = raw.get("training", {})
        if not isinstance(training, dict):
            self.fail("training", f"expected an object {{...}}, got {type(training).__name__}.")
        self.unknown_keys(training, _TRAINING_KEYS, "training.", elsewhere=("", _TOP_KEYS))
        for key in ("loss", "optimizer", "dataset"):
            if key not in training:
                self.fail(f"training.{key}", "missing: a job needs a loss, an optimizer and a dataset.")
        out["loss"] = self.component(training["loss"], "loss", "training.loss", "loss")
        out["optimizer"] = self.optimizer(training["optimizer"])
        if training.get("lr_scheduler") is not None:
            out["lr_scheduler"] = self.component(
                training["lr_scheduler"], "lr_scheduler", "training.lr_scheduler", "lr_scheduler", partial=True
            )
        out["data"] = self.data(raw, training)
        trainer = {k: self.value(training, k, f"trainer.{k}", "training.") for k in _TRAINER_KEYS if k in training}
        # the schema's monitor unless the job names one, not train.yaml's (the default experiment's Dice)
        out["trainer"] = {"monitor": TrainerConf.monitor, "monitor_mode": TrainerConf.monitor_mode.value, **trainer}
        out["evaluators"] = self.listed(raw, "evaluators", "evaluator", "evaluators")
        out["logger"] = self.listed(raw, "metric_loggers", "metric_logger", "logger")
        wandb = self.wandb(raw)
        if wandb:
            out["logger"]["wandb"] = wandb
        self.job.experiment = {k: v for k, v in out.items() if v != {}}

    # ---- pieces -----------------------------------------------------------------------------------

    def unknown_keys(self, obj: dict, allowed, prefix: str, elsewhere=None) -> None:
        for key in obj:
            if key in allowed:
                continue
            hint = did_you_mean(key, allowed)
            if not hint and elsewhere and key in elsewhere[1]:
                hint = f" It belongs {'under ' + repr(elsewhere[0]) if elsewhere[0] else 'at the top level'}."
            self.fail(f"{prefix}{key}", f"unknown key.{hint} Known here: {', '.join(allowed)}.")

    def value(self, obj: dict, key: str, hydra_key: str, prefix: str = "", default: Any = None):
        self.job.keys[hydra_key] = f"{prefix}{key}"
        value = obj.get(key, default)
        if isinstance(value, (dict, list)):
            self.fail(f"{prefix}{key}", f"expected a single value, got {type(value).__name__}.")
        return value

    def component(
        self, spec, kind: str, json_key: str, hydra_key: str, partial: bool = False, default_name: str | None = None
    ) -> dict:
        if isinstance(spec, str):
            spec = {"name": spec}  # shorthand: "loss": "CrossEntropyLoss"
        if not isinstance(spec, dict):
            self.fail(json_key, f'expected {{"name": ..., params}}, got {type(spec).__name__}.')
        name = spec.get("name", default_name)
        if not isinstance(name, str) or not name:
            self.fail(f"{json_key}.name", f"missing: which {kind.replace('_', ' ')} to use.")
        for key in spec:
            if key.startswith("_") and key.endswith("_"):
                self.fail(f"{json_key}.{key}", 'Hydra keys are not part of a JSON job; give the class with "name".')
        try:
            resolution = self.resolver.resolve(name, kind)
        except ResolveError as error:
            self.fail(f"{json_key}.name", str(error))
        self.job.resolutions[json_key] = resolution
        self.job.keys[hydra_key] = json_key
        node = {"_target_": resolution.target}
        if partial or (kind in _CALLED_LATER and resolution.function):
            node["_partial_"] = True  # a function transform or loss: its params bound now, called per item or batch
        for key, value in spec.items():
            if key != "name":
                node[key] = self.nested(value, kind, f"{json_key}.{key}", f"{hydra_key}.{key}")
        if kind == "evaluator" and resolution.target.startswith(_LIBRARY_METRICS):
            node = _library_metric(node)
        return node

    def nested(self, value, kind: str, json_key: str, hydra_key: str):
        """A param that is itself a component (`{"name": "ToTensor"}`, `{"name": "Compose", "transforms": [...]}`),
        or a list of them, resolved like a top-level one: as a transform under a key that says so, else
        as its parent's kind, else as any kind that knows the name."""
        if isinstance(value, list):
            return [self.nested(v, kind, f"{json_key}[{i}]", f"{hydra_key}[{i}]") for i, v in enumerate(value)]
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            return value
        first = "transform" if "transform" in json_key.rsplit(".", 1)[-1] else kind
        for guess in (first, *(k for k in KINDS if k != first)):
            try:
                self.resolver.resolve(value["name"], guess)
            except ResolveError:
                continue
            # a scheduler inside a scheduler (SequentialLR's `schedulers`) gets the optimizer, as the outer one does
            return self.component(value, guess, json_key, hydra_key, partial=guess == "lr_scheduler")
        return self.component(value, first, json_key, hydra_key)  # fails, naming the key and a did-you-mean

    def optimizer(self, spec) -> dict:
        node = self.component(spec, "optimizer", "training.optimizer", "optimizer", partial=True)
        if "learning_rate" in node:
            if "lr" in node:
                self.fail("training.optimizer.learning_rate", "give learning_rate or lr, not both.")
            node["lr"] = node.pop("learning_rate")
            self.job.keys["optimizer.lr"] = "training.optimizer.learning_rate"
        return node

    def data(self, raw: dict, training: dict) -> dict:
        spec = training["dataset"]
        if not isinstance(spec, dict):
            self.fail("training.dataset", f'expected {{"root": ..., "labels": [...], ...}}, got {type(spec).__name__}.')
        data = {}
        own = {k: v for k, v in spec.items() if k not in _DATA_KEYS}  # the dataset's constructor params
        data["dataset"] = self.dataset(
            own, "training.dataset", "data.dataset", self.default_dataset() if "name" not in spec else None
        )
        for key in ("transforms", "sample_transforms", "label_transforms", "batch_transforms"):
            items = spec.get(key) or []
            if not isinstance(items, list):
                self.fail(f"training.dataset.{key}", f"expected a list of transforms, got {type(items).__name__}.")
            data[key] = [
                self.component(t, "transform", f"training.dataset.{key}[{i}]", f"data.{key}[{i}]")
                for i, t in enumerate(items)
            ]
            self.job.keys[f"data.{key}"] = f"training.dataset.{key}"
        if "num_workers" in spec:
            data["num_workers"] = self.value(spec, "num_workers", "data.num_workers", "training.dataset.")
        if "keys" in spec:
            self.job.keys["data.keys"] = "training.dataset.keys"
            data["keys"] = spec["keys"]
        for key in ("split_ratio", "batch_size"):
            if key in training:
                data[key] = self.value(training, key, f"data.{key}", "training.")
        if "preload" in raw:
            data["preload"] = self.value(raw, "preload", "data.preload")
        for key, node in (("validation_dataset", "val"), ("test_dataset", "test")):
            if training.get(key) is not None:
                data[node] = self.held_out(training[key], key, node, spec.get("name") or self.default_dataset())
        return data

    def dataset(self, spec: dict, json_key: str, hydra_key: str, default_name: str | None) -> dict:
        """A dataset component; a relative `root` is the project's."""
        dataset = self.component(spec, "dataset", json_key, hydra_key, default_name=default_name)
        root = dataset.get("root")
        if isinstance(root, str) and root and not Path(root).expanduser().is_absolute() and "${" not in root:
            dataset["root"] = "${project}/" + re.sub(r"^(\./)+", "", root)
        return dataset

    def held_out(self, spec, json_name: str, node: str, training_name: str) -> dict:
        """`training.validation_dataset` -> `data.val` (scored every epoch), `training.test_dataset` -> `data.test`
        (scored with best.pt after training): their own transforms or, without them, the training data's
        deterministic ones."""
        json_key, hydra_key = f"training.{json_name}", f"data.{node}"
        if not isinstance(spec, dict):
            self.fail(json_key, f'expected {{"root": ..., ...}}, got {type(spec).__name__}.')
        own_transforms = ("transforms", "sample_transforms", "label_transforms")
        for key in _DATA_KEYS:
            if key in spec and key not in own_transforms:
                self.fail(
                    f"{json_key}.{key}",
                    f"not for a {node} set: it uses training.dataset's {key}. "
                    f"A {node} set may give: {', '.join(own_transforms)}.",
                )
        held = {
            "dataset": self.dataset(
                {k: v for k, v in spec.items() if k not in own_transforms},
                json_key,
                f"{hydra_key}.dataset",
                training_name,
            )
        }
        for key in own_transforms:
            if spec.get(key) is not None:
                if not isinstance(spec[key], list):
                    self.fail(f"{json_key}.{key}", f"expected a list of transforms, got {type(spec[key]).__name__}.")
                held[key] = [
                    self.component(t, "transform", f"{json_key}.{key}[{i}]", f"{hydra_key}.{key}[{i}]")
                    for i, t in enumerate(spec[key])
                ]
                self.job.keys[f"{hydra_key}.{key}"] = f"{json_key}.{key}"
        return held

    def default_dataset(self) -> str:
        """A dataset without a name: the one dataset in the project's src/Datasets/."""
        folder = self.job.project / "src" / "Datasets"
        names = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))
        if len(names) == 1:
            return names[0]
        found = f"the project's src/Datasets/ holds {', '.join(names) or 'no dataset'}"
        self.fail("training.dataset.name", f'missing, and {found}: add "name": "<dataset class>".')

    def listed(self, raw: dict, key: str, kind: str, hydra_group: str) -> dict:
        items = raw.get(key) or []
        if not isinstance(items, list):
            self.fail(key, f'expected a list of {{"name": ..., params}}, got {type(items).__name__}.')
        out = {}
        for i, spec in enumerate(items):
            name = spec.get("name") if isinstance(spec, dict) else spec
            base = snake(str(name).rsplit(".", 1)[-1]) if name else kind
            slot, n = base, 2
            while slot in out or slot in _RESERVED_SLOTS:
                slot, n = f"{base}_{n}", n + 1
            out[slot] = self.component(spec, kind, f"{key}[{i}]", f"{hydra_group}.{slot}")
        return out

    def wandb(self, raw: dict) -> dict:
        key = raw.get("wandb_api_key")
        if key is not None:
            if not isinstance(key, str):
                self.fail("wandb_api_key", "expected a string.")
            if key and not (key.startswith("<") and key.endswith(">")):  # "<your wandb api key>": the seed's template
                self.job.env["WANDB_API_KEY"] = key
        node = {}
        if "wandb_project_name" in raw:
            node["project"] = self.value(raw, "wandb_project_name", "logger.wandb.project")
        if "wandb_prediction_examples" in raw:
            node["prediction_examples"] = self.value(
                raw, "wandb_prediction_examples", "logger.wandb.prediction_examples"
            )
        return {"_target_": WANDB_TARGET, **node} if node else {}


def _validate_values(job: JsonJob) -> None:
    """Types (schema) and ranges (validate.py) of the converted values, named by their JSON keys."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from frame.config.schema import TrainConf
    from frame.config.validate import validate

    values = {k: v for k, v in job.experiment.items() if k != "defaults"}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConf), values)
    except OmegaConfBaseException as error:
        first = str(error).splitlines()[0]
        raise JobError(job.error(first[0].lower() + first[1:] + ".", getattr(error, "full_key", None))) from None
    try:
        validate(merged)
    except FrameError as error:
        raise JobError(job.error(str(error), error.key)) from None


def _library_metric(node: dict) -> dict:
    """A torchmetrics or MONAI metric inside frame's adapter: post-processing and keys to it, the rest to the metric."""
    adapter = {k: node.pop(k) for k in _ADAPTER_KEYS if k in node}
    if node["_target_"].startswith("monai.") and not {"activation", "post_pred", "post_label"} & set(adapter):
        adapter["activation"] = "auto"  # a MONAI metric takes no logits: post-processed as the loss trains
    return {"_target_": LIBRARY_METRIC, "metric": node, **adapter}


def snake(name: str) -> str:
    """OrganDice -> organ_dice, CSVLogger -> csv_logger, MeanIoU -> mean_iou (not mean_io_u)."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name.replace("IoU", "Iou"))
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def store(job: JsonJob) -> str:
    """Put the job into Hydra's ConfigStore as the experiment option `<file name>` (e.g. `job_01.json`).

    The node is parsed from the very YAML text `frame convert` writes, so
    `frame run job.json` and `frame train experiment=<converted>` compose the same
    config. The `.json` in the option name keeps a YAML experiment of the same
    stem from shadowing it.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(
        group="experiment", name=job.path.name, node=OmegaConf.create(job.to_yaml()), package="_global_"
    )
    return job.path.name
