"""Build everything a run needs from its composed config.

Components are instantiated from their `_target_`s; runtime objects (the
model's parameters for the optimizer, the optimizer for the scheduler, the
dataset's labels for evaluators) are passed at the call site.
"""

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from frame.config.project import use_project
from frame.config.rundir import lost_history
from frame.config.source import inspect_signature
from frame.config.walk import FRAME_KEYS, components
from frame.core.errors import FrameError
from frame.data.loading import EpochSampler, JobDataset, check_item, is_random, make_loader, split_indices
from frame.training.batch_transforms import BatchTransforms
from frame.training.checkpoint import Checkpoints
from frame.training.distributed import World
from frame.training.ema import WeightAverage, build_ema
from frame.training.losses import loss_activation
from frame.training.metrics import LibraryMetric, as_evaluator
from frame.training.monai_import import defer_optuna
from frame.training.param_groups import check_options, parameter_groups
from frame.training.resume_guard import check_resume
from frame.training.transform_args import torchvision_args

log = logging.getLogger("frame")
VAL_SALT = 1  # validation items' seed stream (training's is 0): `frame eval` uses it too, so both see the same items


@dataclass
class Job:
    cfg: DictConfig
    run_dir: Path
    device: torch.device
    model: torch.nn.Module
    loss_fn: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    train_loader: torch.utils.data.DataLoader
    train_sampler: EpochSampler
    val_loader: torch.utils.data.DataLoader
    labels: list | None
    evaluators: dict = field(default_factory=dict)
    loggers: list = field(default_factory=list)
    checkpoints: Checkpoints | None = None
    resume_state: dict | None = None
    config_yaml: str = ""
    config_hash: str = ""
    train_model: torch.nn.Module | None = None  # what the training step calls: DDP around `model`, or `model`
    memory_format: torch.memory_format = torch.preserve_format  # of training inputs (trainer.channels_last)
    test_loader: torch.utils.data.DataLoader | None = None  # data.test: best.pt is evaluated on it after training
    inferer: object = None  # `inferer`: how validation and the test set call the model (None: model(inputs))
    ema: WeightAverage | None = None  # trainer.ema: the averaged weights, what validation scores
    batch_transforms: BatchTransforms | None = None  # data.batch_transforms: on each collated training batch

    def __post_init__(self):
        if self.train_model is None:
            self.train_model = self.model

    @property
    def config_dict(self) -> dict:
        return OmegaConf.to_container(self.cfg, resolve=True)  # pyright: ignore[reportReturnType]


def build_job(cfg: DictConfig, run_dir: Path, world: World | None = None) -> Job:
    """Seed, pick the device, and instantiate data, model, loss, optimizer, scheduler, evaluators, loggers.

    Under DDP (`world` of several ranks) each rank trains on its shard of every epoch, validates on
    the whole validation set, and only rank 0 gets loggers and writes checkpoints.
    """
    use_project(cfg.get("project"))  # a seed project's `src.*` targets import in every process that builds
    world = world or World()
    seed_everything(cfg.seed)
    torch.use_deterministic_algorithms(cfg.trainer.deterministic, warn_only=True)
    device = pick_device(cfg.trainer.device, world.local_rank if world.size > 1 else None)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)

    data = cfg.data
    dataset = build_dataset(data)
    labels = getattr(dataset, "labels", None)
    overfit = cfg.trainer.overfit_batches
    own_val = has_data(data.get("val")) and not overfit  # a validation set of its own
    if has_data(data.get("val")):  # every item trains (data.split_ratio unused)
        train_idx = val_idx = list(range(len(dataset)))
    else:
        train_idx, val_idx = split_indices(len(dataset), data.split_ratio, cfg.seed)
    if overfit:  # Lightning's overfit_batches: the same few training items, unshuffled, also validate
        train_idx = val_idx = train_idx[: overfit * data.batch_size]
    sample_tf, label_tf = build_transforms(data)
    item_tf = build_item_transforms(data)
    check_item(dataset, train_idx[0], data["keys"])  # here: in a loader worker its error would come wrapped
    preload = dict(preload=data.preload, preload_workers=data.num_workers, keys=list(data["keys"]))
    train_set = JobDataset(
        dataset, train_idx, sample_tf, label_tf, cfg.seed, salt=0, item_transforms=item_tf, **preload
    )
    train_sampler = EpochSampler(
        len(train_set),
        shuffle=not overfit,
        seed=cfg.seed,
        batch_size=data.batch_size,
        rank=world.rank,
        world_size=world.size,
        limit_batches=cfg.trainer.limit_train_batches,
    )
    if overfit:  # Lightning's rule: the training batches themselves, as trained on
        val_set = JobDataset(
            dataset, val_idx, sample_tf, label_tf, cfg.seed, salt=VAL_SALT, item_transforms=item_tf, **preload
        )
    elif own_val:
        val_set = eval_dataset(cfg, data.val, "data.val", preload=data.preload)[0]
    else:  # the split's share, as `frame eval` would see it: the deterministic transforms only
        val_set = JobDataset(
            dataset,
            val_idx,
            deterministic(sample_tf),
            deterministic(label_tf),
            cfg.seed,
            salt=VAL_SALT,
            item_transforms=deterministic(item_tf),
            **preload,
        )
    val_batch = (data.val.get("batch_size") if own_val else None) or data.batch_size
    val_sampler = EpochSampler(
        len(val_set), shuffle=False, batch_size=val_batch, limit_batches=cfg.trainer.limit_val_batches
    )

    model = build_model(cfg, device)
    memory_format = channels_last(model) if cfg.trainer.channels_last else torch.preserve_format
    ema = build_ema(cfg.trainer.get("ema"), model)  # a copy of the plain module, before compiling it
    if cfg.trainer.compile:
        model.compile()  # in place: state_dict keys stay plain, so checkpoints resume with compile on or off
    optimizer = build_optimizer(cfg, model, device)
    scheduler = build_scheduler(cfg, optimizer)
    loss_fn = build_loss(cfg)
    lost = lost_history(run_dir) if cfg.resume else None
    if lost:  # training from epoch 1 would erase that history: the user decides
        raise FrameError(
            f"{run_dir} cannot be resumed: {lost}. Restore the checkpoints, start over with "
            f"fresh=true (moves the old run aside, deletes nothing), or pick another name with name=<new>."
        )
    checkpoints = Checkpoints(
        run_dir,
        cfg.trainer.checkpoint_every_n_epochs,
        cfg.trainer.keep_last_checkpoints,
        cfg.trainer.checkpoint_every_n_minutes,
    )
    resume_state = checkpoints.load_latest() if cfg.resume else None
    if resume_state is not None:
        check_resume(resume_state, config_yaml, train_sampler.world_size, force=cfg.force_resume)
    return Job(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        model=model,
        train_model=world.wrap(model, device),
        memory_format=memory_format,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.trainer.precision.value == "fp16"),
        train_loader=make_loader(train_set, train_sampler, data.batch_size, data.num_workers, device, cfg.seed),
        train_sampler=train_sampler,
        val_loader=make_loader(val_set, val_sampler, val_batch, data.num_workers, device, cfg.seed),
        inferer=build_inferer(cfg),
        labels=labels,
        evaluators=build_evaluators(cfg, labels, loss_fn),
        loggers=[_instantiate(node, f"logger.{name}") for name, node in cfg.logger.items()] if world.is_main else [],
        checkpoints=checkpoints if world.is_main else None,  # every rank resumes from them, rank 0 writes
        resume_state=resume_state,
        config_yaml=config_yaml,
        config_hash=hashlib.sha256(config_yaml.encode()).hexdigest()[:16],
        test_loader=eval_loader(cfg, data.test, device, "data.test")[0] if has_data(data.get("test")) else None,
        ema=ema,
        batch_transforms=build_batch_transforms(data, cfg.seed, world.rank),
    )


def has_data(node) -> bool:
    """Whether a held-out node (`data.val`, `data.test`) names a dataset (null, or a node without a dataset,
    is none; older runs saved null)."""
    return node is not None and node.get("dataset") is not None


def validation_data(cfg: DictConfig) -> tuple[DictConfig, str]:
    """(node, key) of the data a run validates on: `data.val` when it has one (scored whole), else `data`
    (whose split share validation scored: `validation_share`)."""
    return (cfg.data.val, "data.val") if has_data(cfg.data.get("val")) else (cfg.data, "data")


def validation_share(cfg: DictConfig, length: int) -> list[int]:
    """The indices of `data.dataset` a run without `data.val` validated on: the split `build_job` makes
    (`data.split_ratio`, `seed`), so that `frame eval` scores the items validation scored."""
    return split_indices(length, cfg.data.split_ratio, cfg.seed)[1]


def deterministic(transforms: list) -> list:
    """The transforms without the random ones (MONAI's Randomizable, torchvision's Random*): what validation,
    the test set and `frame eval` see."""
    return [t for t in transforms if not is_random(t)]


def eval_dataset(cfg: DictConfig, node: DictConfig, prefix: str = "data", preload: bool = False, share=None):
    """(JobDataset, dataset) over the items of `node`'s dataset in order (every one, or those `share(length)`
    picks) with the deterministic transforms only: `node`'s own, or the training data's where it gives none
    (`data.val`, `data.test` may)."""
    dataset = build_dataset(node, prefix)
    item_tf, sample_tf, label_tf = eval_transforms(cfg, node, prefix)
    items = JobDataset(
        dataset,
        share(len(dataset)) if share is not None else range(len(dataset)),
        sample_tf,
        label_tf,
        cfg.seed,
        salt=VAL_SALT,
        item_transforms=item_tf,
        keys=list(cfg.data["keys"]),
        preload=preload,
        preload_workers=cfg.data.num_workers,
    )
    return items, dataset


def eval_transforms(cfg: DictConfig, node: DictConfig, prefix: str = "data") -> tuple[list, list, list]:
    """(item, sample, label) transforms of a held-out node, deterministic only: its own, or data's where it
    gives none (sample and label transforms go together)."""
    own = node.get("sample_transforms") is not None or node.get("label_transforms") is not None
    sample_tf, label_tf = build_transforms(node if own else cfg.data, prefix if own else "data")
    own_items = node.get("transforms") is not None
    item_tf = build_item_transforms(node if own_items else cfg.data, prefix if own_items else "data")
    return deterministic(item_tf), deterministic(sample_tf), deterministic(label_tf)


def eval_loader(cfg: DictConfig, node: DictConfig, device: torch.device, prefix: str = "data", share=None):
    """(loader, dataset): `eval_dataset` in order, in batches of the node's `batch_size` (else data.batch_size)."""
    items, dataset = eval_dataset(cfg, node, prefix, share=share)
    batch_size = node.get("batch_size") or cfg.data.batch_size
    sampler = EpochSampler(len(items), shuffle=False, batch_size=batch_size)
    return make_loader(items, sampler, batch_size, cfg.data.num_workers, device, cfg.seed), dataset


def build_inferer(cfg: DictConfig):
    """`inferer`: called as inferer(inputs, network) wherever a model scores or predicts (MONAI's inferers
    take these); None: the model is called on the inputs."""
    node = cfg.get("inferer")
    return None if node is None else _instantiate(node, "inferer")


def build_loss(cfg: DictConfig):
    return _instantiate(cfg.loss, "loss")


def build_dataset(data: DictConfig, prefix: str = "data"):
    return _instantiate(data.dataset, f"{prefix}.dataset")


def build_model(cfg: DictConfig, device: torch.device) -> torch.nn.Module:
    model = _instantiate(cfg.model, "model")
    if not isinstance(model, torch.nn.Module):
        raise FrameError(
            f"model: {cfg.model.get('_target_')} built a {type(model).__module__}.{type(model).__qualname__}, "
            "not a torch.nn.Module: point model._target_ at a model class or a function that returns one.",
            key="model",
        )
    return model.to(device)


def build_transforms(data: DictConfig, prefix: str = "data") -> tuple[list, list]:
    """(sample transforms, label transforms) of a data node (`data`, or `data.test`)."""
    return tuple(  # pyright: ignore[reportReturnType]
        [_instantiate(t, f"{prefix}.{kind}[{i}]") for i, t in enumerate(data.get(kind) or [])]
        for kind in ("sample_transforms", "label_transforms")
    )


def build_item_transforms(data: DictConfig, prefix: str = "data") -> list:
    """`data.transforms` (or a held-out node's): applied to the whole item (MONAI's dictionary transforms)."""
    return [_instantiate(t, f"{prefix}.transforms[{i}]") for i, t in enumerate(data.get("transforms") or [])]


def build_batch_transforms(data: DictConfig, seed: int, rank: int = 0) -> BatchTransforms | None:
    """`data.batch_transforms` (MixUp, CutMix): None when there are none."""
    built = [_instantiate(t, f"data.batch_transforms[{i}]") for i, t in enumerate(data.get("batch_transforms") or [])]
    return BatchTransforms(built, seed, rank) if built else None


def build_evaluators(cfg: DictConfig, labels: list | None, loss_fn=None) -> dict:
    """Every evaluator by name; a torchmetrics or MONAI metric given directly is wrapped (frame.training.metrics),
    and a library metric's `activation: auto` follows the loss (`loss_activation`), as `frame predict` does."""
    evaluators = {
        name: as_evaluator(_instantiate(node, f"evaluators.{name}", labels=labels, key=name), name, labels)
        for name, node in cfg.evaluators.items()
    }
    for evaluator in evaluators.values():
        if isinstance(evaluator, LibraryMetric):
            evaluator.follow(loss_activation(loss_fn))
    return evaluators


def build_optimizer(cfg: DictConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters, in groups where the node asks (frame.training.param_groups);
    on CUDA the fused implementation where the class has one and the job sets neither `fused` nor `foreach`:
    one kernel per step, and it takes the loop's non-finite flag as `found_inf`, so skipping a bad step needs
    no host sync (frame.training.loop)."""
    node = cfg.optimizer
    fused = device.type == "cuda" and node.get("foreach") is None and not node.get("differentiable")
    groups = parameter_groups(
        model, node
    )  # frame's keys (FRAME_KEYS["optimizer"]) shape them; the class never sees those
    own = OmegaConf.create({k: v for k, v in node.items() if k not in FRAME_KEYS["optimizer"]})
    optimizer = _instantiate(own, "optimizer", **({"fused": True} if fused else {}))(groups)
    check_options(optimizer, node)
    if "fused" in optimizer.defaults:  # this machine's choice, not the checkpoint's (a CPU run may resume on a GPU)
        chosen = [group["fused"] for group in optimizer.param_groups]

        def keep_fused(opt):
            for group, value in zip(opt.param_groups, chosen):
                group["fused"] = value

        optimizer.register_load_state_dict_post_hook(keep_fused)
    return optimizer


def channels_last(model: torch.nn.Module) -> torch.memory_format:
    """Put a conv model's weights in channels-last order (3D for 5D weights); the format its inputs take."""
    ranks = {p.dim() for p in model.parameters()} & {4, 5}
    if not ranks:
        log.warning("trainer.channels_last=true but the model has no 4D or 5D (conv) weights: nothing changes")
        return torch.preserve_format
    if len(ranks) > 1:
        raise FrameError(
            "trainer.channels_last=true but the model mixes 2D (4D weights) and 3D (5D weights) "
            "convolutions: one memory format cannot fit both; leave trainer.channels_last=false."
        )
    memory_format = torch.channels_last_3d if 5 in ranks else torch.channels_last
    model.to(memory_format=memory_format)
    return memory_format


def build_scheduler(cfg: DictConfig, optimizer):
    """The scheduler; ReduceLROnPlateau's `mode` follows `trainer.monitor_mode` unless the job gives it,
    and a job that gives the other one is refused (it would cut the rate while the metric improves).
    A chained one (`SequentialLR`, `ChainedScheduler`) gets its `schedulers` built first, each with the optimizer."""
    node = cfg.lr_scheduler
    if node is None:
        return None
    params = OmegaConf.to_container(node, resolve=True)  # resolved here: a detached copy has no ${trainer...}
    node = OmegaConf.create({k: v for k, v in params.items() if k not in FRAME_KEYS["lr_scheduler"]})
    target = get_object(node._target_)
    if isinstance(target, type) and issubclass(target, torch.optim.lr_scheduler.ReduceLROnPlateau):
        wanted = cfg.trainer.monitor_mode.value
        given = node.get("mode")
        given = getattr(given, "value", given)
        if given is not None and given != wanted:
            raise FrameError(
                f"lr_scheduler.mode={given} contradicts trainer.monitor_mode={wanted} "
                f"(trainer.monitor={cfg.trainer.monitor}): ReduceLROnPlateau would cut the rate while "
                f"{cfg.trainer.monitor} improves. Drop lr_scheduler.mode (it follows monitor_mode) "
                f"or set both alike."
            )
        return _instantiate(node, "lr_scheduler")(optimizer, mode=wanted)
    return _scheduler(node, optimizer, "lr_scheduler")


def _scheduler(node: DictConfig, optimizer, key: str):
    """One scheduler over `optimizer`; the inner `schedulers` of a chained one are built the same way first
    (torch wants them built, each with the optimizer, where Hydra would hand it configs or partials)."""
    inner = node.get("schedulers")
    if inner is None:
        return _instantiate(node, key)(optimizer)
    built = [
        _scheduler(OmegaConf.merge(part, {"_partial_": True}), optimizer, f"{key}.schedulers[{i}]")
        for i, part in enumerate(inner)
    ]
    # plain lists: SequentialLR keeps `milestones` as given, and its state_dict goes into the checkpoint
    outer = OmegaConf.create({"_convert_": "all", **{k: v for k, v in node.items() if k != "schedulers"}})
    takes = inspect_signature(get_object(node._target_))
    first = takes.params[0].name if takes is not None and takes.params else "optimizer"
    try:  # ChainedScheduler(schedulers, optimizer=None), SequentialLR(optimizer, schedulers, milestones)
        if first == "schedulers":
            return _instantiate(outer, key)(built, optimizer=optimizer)
        return _instantiate(outer, key)(optimizer, schedulers=built)
    except (TypeError, ValueError) as error:  # e.g. milestones that do not match the schedulers
        raise FrameError(f"could not build {key} ({node._target_}): {error}") from error


def import_components(cfg: DictConfig) -> None:
    """Import the module of every component (MONAI's, torchvision's, the project's) before building
    any: `frame.launch.corridor` runs the imports with the garbage collector off."""
    defer_optuna()  # MONAI's import would import Optuna (0.7 s): frame.training.monai_import
    use_project(cfg.get("project"))
    for key, node, _ in components(cfg):
        try:
            get_object(node._target_)
        except Exception as error:
            raise FrameError(f"could not import {key} ({node._target_}): {error}") from error


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """`trainer.device` on this machine; under DDP (`local_rank` given) each rank takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and local_rank is not None and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FrameError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu or auto.")
    return device


def _instantiate(node, key: str, /, **runtime):
    """Instantiate `node`, passing each runtime kwarg only where the constructor takes it and the config leaves it unset."""
    node = torchvision_args(node, key)  # `dtype: float32`, `interpolation: bilinear` as the objects they name
    target = get_object(node._target_) if "_target_" in node else None  # a class, or a function transform or loss
    if runtime and target is not None:
        signature = inspect_signature(target)
        accepted = set(signature.names) if signature is not None else set()
        runtime = {k: v for k, v in runtime.items() if k in accepted and node.get(k) is None}
    try:
        return instantiate(node, **runtime)
    except Exception as error:  # Hydra wraps constructor errors; name the key that caused it
        cause = error.__cause__ or error
        raise FrameError(f"could not build {key} ({node.get('_target_')}): {cause}") from error
