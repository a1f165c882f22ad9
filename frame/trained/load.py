"""A finished (or running) run, read back: its config, metrics and checkpoints, and its model rebuilt.

`load_run` reads files only; `load_model` rebuilds the model from the config saved *in the
checkpoint* (the one its weights were trained with) and loads the weights, no optimizer or
scheduler. `run_config` is that config with command-line overrides applied, which is what
`frame eval`, `frame predict` and `frame export` build from.
"""

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from frame.core import run_record
from frame.core.errors import FrameError, did_you_mean
from frame.tracking.jsonl import read_metrics
from frame.training.checkpoint import load_checkpoint


@dataclass
class Run:
    """What `frame.load_run` returns: everything a run directory holds, read from its files."""

    dir: Path
    config: DictConfig | None  # .hydra/config.yaml (the composed config, interpolations kept)
    record: dict  # run.json: status, attempts, W&B id, test figures
    metrics: list[dict] = field(default_factory=list)  # metrics.jsonl, one dict per logged step
    checkpoints: dict[str, Path] = field(default_factory=dict)  # "best", "last", "epoch-0003" -> file

    @property
    def best(self) -> Path | None:
        return self.checkpoints.get("best")


def load_run(run_dir) -> Run:
    """The run in `run_dir`: config, run.json, metrics and checkpoint paths (no torch work).

    Raises:
        FrameError: `run_dir` is not a run directory (no config and no checkpoint).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FrameError(f"{run_dir} is not a directory; give a run directory such as outputs/<name>.")
    config_file = run_dir / ".hydra" / "config.yaml"
    folder = run_dir / "checkpoints"
    checkpoints = (
        {p.stem: p for p in sorted(folder.glob("*.pt")) if not p.name.startswith(".")} if folder.is_dir() else {}
    )
    if not config_file.is_file() and not checkpoints:
        raise FrameError(f"{run_dir} is not a run directory: it has neither .hydra/config.yaml nor checkpoints/*.pt.")
    return Run(
        dir=run_dir,
        config=OmegaConf.load(config_file) if config_file.is_file() else None,
        record=run_record.read(run_dir),
        metrics=read_metrics(run_dir),
        checkpoints=checkpoints,
    )


def checkpoint_path(run_dir, checkpoint: str = "best") -> Path:
    """`best`, `last`, another name in checkpoints/ (`epoch-0004`) or a file path.

    Raises:
        FrameError: no such checkpoint; the message lists the ones there are.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FrameError(f"{run_dir} is not a directory; give a run directory such as outputs/<name>.")
    given = Path(checkpoint)
    if given.suffix == ".pt" or "/" in checkpoint:
        if not given.is_file():
            raise FrameError(f"--checkpoint {checkpoint}: no such file.")
        return given
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        there = (
            sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
        )
        hint = (
            f"it has {', '.join(there)}.{did_you_mean(checkpoint, there)}"
            if there
            else "it has none (not trained yet?)."
        )
        raise FrameError(f"{run_dir} has no checkpoint '{checkpoint}' (checkpoints/{checkpoint}.pt); {hint}")
    return path


def run_config(saved: dict, overrides: list[str] = ()) -> DictConfig:
    """The checkpoint's resolved config with `overrides` applied (`key=value`, `+key=value`, `~key`,
    `evaluators=[dice,accuracy]` picks frame's evaluator configs by name).

    Raises:
        FrameError: an override that does not parse or names no key.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from frame.compat.hydra import ConfigLoaderImpl
    from frame.config.schema import TrainConf, register_configs
    from frame.config.validate import unmet_rule

    register_configs()  # the `len` resolver a saved config may still name
    try:
        cfg = OmegaConf.create(saved["config"])
    except Exception as error:  # YAML or OmegaConf's errors on damaged text
        raise FrameError(
            f"{saved.get('_path', 'the checkpoint')}: its stored config is damaged: "
            f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None
    if not isinstance(cfg, DictConfig):
        raise FrameError(f"{saved.get('_path', 'the checkpoint')}: its stored config is damaged: not a mapping.")
    try:  # onto the schema: keys added to frame since the run trained get their defaults, types are checked
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConf), cfg)
    except Exception:  # an older schema's key that is gone: the saved config as it is
        OmegaConf.set_struct(cfg, True)  # a misspelt key fails instead of adding a key nothing reads
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise FrameError(f"could not parse the overrides {list(overrides)}: {error}") from error
    rest = []
    for override in parsed:
        if override.key_or_group == "evaluators" and override.value_type is not None and not override.is_delete():
            names = override.value() if isinstance(override.value(), list) else [override.value()]
            with open_dict(cfg):  # each file is `<name>: {_target_: ...}`, as the evaluators group merges it
                cfg.evaluators = OmegaConf.merge(*(_evaluator_config(name) for name in names))  # pyright: ignore[reportGeneralTypeIssues, reportOptionalIterable]
        else:
            rest.append(override)
    try:
        ConfigLoaderImpl._apply_overrides_to_config(rest, cfg)
    except HydraException as error:
        raise FrameError(f"{error} (keys of the run's config: {', '.join(cfg)})") from error
    for key in (o.key_or_group for o in rest if not o.is_delete()):
        value = OmegaConf.select(cfg, key)
        if expected := unmet_rule(key, value):
            raise FrameError(f"{key}={value!r} is invalid: expected {expected}.", key=key)
    return cfg  # pyright: ignore[reportReturnType]


def _evaluator_config(name: str) -> DictConfig:
    configs = importlib.resources.files("frame.conf") / "evaluators"
    known = sorted(p.name.removesuffix(".yaml") for p in configs.iterdir() if p.name.endswith(".yaml"))
    if name not in known:
        raise FrameError(
            f"evaluators: no evaluator config '{name}'; frame has {', '.join(known)}.{did_you_mean(name, known)} "
            f"Give another as evaluators.<name>._target_=<class>."
        )
    return OmegaConf.create((configs / f"{name}.yaml").read_text())  # pyright: ignore[reportReturnType]


def load_model(
    run_dir, checkpoint: str = "best", device: str = "cpu", trust: bool = False, ema: bool = True
) -> torch.nn.Module:
    """The run's model with the checkpoint's weights, in eval mode on `device`: their moving average when
    the run kept one (`trainer.ema`; what its validation scored), the trained weights with `ema=False`.

    The model is rebuilt from the config stored in the checkpoint (a project's `src.*` model
    imports from the project recorded there), so it matches the weights even when the run's
    YAML changed later. A checkpoint written on a GPU loads on the CPU and the other way round.
    That stored config is checked like a job before anything is built (`check_stored_config`);
    `trust=True` skips that for a run of your own.

    Raises:
        FrameError: no such run or checkpoint, an unreadable checkpoint, a refused target in its
            config, or weights that do not fit.
    """
    model, _, _ = rebuild(run_dir, checkpoint, device=device, trust=trust, ema=ema)
    return model


def rebuild(
    run_dir,
    checkpoint: str = "best",
    overrides: list[str] = (),
    device: str = "cpu",
    trust: bool = False,
    ema: bool = True,
):
    """(model in eval mode with its weights, config with overrides, the loaded checkpoint); the weights are
    the EMA's when the checkpoint has one and `ema` (frame.training.ema.trained_weights)."""
    from frame.config.project import use_project
    from frame.training.build import build_model, pick_device
    from frame.training.ema import trained_weights

    path = checkpoint_path(run_dir, checkpoint)
    saved = load_checkpoint(path)
    saved["_path"] = str(path)
    cfg = run_config(saved, overrides)
    if not trust:
        check_stored_config(cfg, path)
    use_project(cfg.get("project"))
    model = build_model(cfg, pick_device(device))
    try:
        model.load_state_dict(trained_weights(saved, ema))
    except RuntimeError as error:
        raise FrameError(
            f"the weights in {path} do not fit the model of its config: {str(error).splitlines()[0]}"
        ) from error
    return model.eval(), cfg, saved


def check_stored_config(cfg: DictConfig, path: Path) -> None:
    """Refuse a checkpoint whose config names a target that loads pickles or runs commands (the same
    policy as `frame check`, by what each target resolves to), before anything is imported or built:
    a `best.pt` received from elsewhere must not run code when it is evaluated.

    Raises:
        FrameError: naming the key and the way out for a run of your own (`--trust`, `trust=True`).
    """
    from frame.config.check import refused_targets

    if problems := refused_targets(cfg):
        found = "\n".join(f"  {p.key}: {p.message}" for p in problems)
        raise FrameError(
            f"{path}: the config stored in this checkpoint is refused; nothing was built:\n{found}\n"
            "If this is your own run and you trust its config, pass --trust (Python: trust=True)."
        )


def run_data(run_dir, cfg: DictConfig, device, overrides=()):
    """(loader, dataset, what was scored) on the data a trained run validated on: `data.val` whole, or, for a
    run without one, the validation share of `data.dataset` (its split), unless an override points
    `data.dataset` at other data, which is then scored whole. Relative paths in its config are read from the
    current directory; when one is not found and the run was started elsewhere, the message says where
    (`frame eval` from another directory than the project's)."""
    from frame.training.build import eval_loader, validation_data, validation_share

    node, key = validation_data(cfg)
    share = (lambda length: validation_share(cfg, length)) if key == "data" and not other_dataset(overrides) else None
    try:
        loader, dataset = eval_loader(cfg, node, device, key, share=share)
    except FrameError as error:
        started = OmegaConf.select(_hydra_yaml(run_dir), "hydra.runtime.cwd")
        missing = any(words in str(error).lower() for words in ("does not exist", "no such file", "not found"))
        if not missing or started is None or Path(started) == Path.cwd():
            raise
        raise FrameError(
            f"{error} Relative paths in the run's config are read from the current directory, "
            f"{Path.cwd()}; the run was started in {started}: run the command from there, or give "
            f"the path, e.g. data.dataset.root=<path>."
        ) from None
    if share is not None:
        scored = (
            f"the validation share of data.dataset ({len(loader.dataset)} of {len(dataset)} items: "
            f"data.split_ratio={cfg.data.split_ratio}, seed={cfg.seed}), as validation scored it"
        )
    else:
        scored = f"every item of {key}.dataset"
    return loader, dataset, scored


def other_dataset(overrides) -> bool:
    """Whether the overrides point `data.dataset` at other data than the run's."""
    return any(o.lstrip("+~").startswith("data.dataset") for o in overrides)


def _hydra_yaml(run_dir):
    try:
        return OmegaConf.load(Path(run_dir) / ".hydra" / "hydra.yaml")
    except (OSError, ValueError):
        return None
