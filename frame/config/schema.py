"""Typed schema of a training config, registered in Hydra's ConfigStore.

Component nodes (model, loss, optimizer, ...) stay free-form: they are a
`_target_` plus that class's constructor arguments. Everything else has a
type here, so `trainer.epochs=abc` or `trainer.foo=1` fails while Hydra
composes, before any run directory exists.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Mode(str, Enum):
    min = "min"
    max = "max"


class EmaValidate(str, Enum):
    ema = "ema"
    both = "both"


@dataclass
class EmaConf:
    """`trainer.ema`: an exponential moving average of the weights (frame.training.ema)."""

    decay: Optional[float] = None  # e.g. 0.999: ema = decay * ema + (1 - decay) * weights; null = no EMA
    every_n_steps: int = 1  # update after every N optimizer steps
    warmup_steps: int = 0  # copy the weights (no averaging) for the first N optimizer steps
    validate: EmaValidate = EmaValidate.ema  # ema: val/... of the average | both: also val_raw/... of the weights


@dataclass
class TrainerConf:
    epochs: int = 10
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    precision: Precision = Precision.fp32  # autocast dtype; fp16 adds a GradScaler
    grad_norm_clip: Optional[float] = None  # max total grad norm; null = no clipping
    detect_bad_gradients: bool = True  # skip (and count) steps with a non-finite loss or gradient
    max_bad_steps: int = 10  # abort after this many consecutive skipped steps
    monitor: str = "val/loss"  # metric that picks best.pt and feeds ReduceLROnPlateau
    monitor_mode: Mode = Mode.min
    log_every_n_steps: int = 50  # training scalars are read from the device this often
    checkpoint_every_n_epochs: int = 1  # also keep checkpoints/epoch-NNNN.pt; 0 = only last/best
    checkpoint_every_n_steps: int = 0  # also write last.pt every N steps inside an epoch (SIGKILL loses < N); 0 = off
    # write last.pt once this many minutes have passed since the last write (at a step's end), and after an epoch
    # only when it is due, best, periodic, the last or stopped; 0 = after every epoch
    checkpoint_every_n_minutes: float = 0
    keep_last_checkpoints: int = 2  # how many epoch-NNNN.pt to keep
    deterministic: bool = False  # torch.use_deterministic_algorithms
    devices: int = 1  # processes (GPUs) per node training one job with DDP; data.batch_size is per process
    dist_timeout_s: int = 600  # a collective waiting longer fails the job (a dead or hung rank); > a checkpoint write
    accumulate_grad_batches: int = (
        1  # batches per optimizer step (loss / k); steps, logging and checkpoints count optimizer steps
    )
    compile: bool = False  # torch.compile the model (in place: checkpoints hold the plain module's weights)
    channels_last: bool = False  # channels-last memory format for a conv model (2D or 3D) and its inputs
    limit_train_batches: Optional[int] = None  # train on at most this many batches an epoch (debug=fast); null = all
    limit_val_batches: Optional[int] = None  # validate on at most this many batches; null = all
    overfit_batches: int = 0  # > 0: train and validate on the same first N training batches, unshuffled (debug=overfit)
    ema: EmaConf = field(default_factory=EmaConf)  # moving average of the weights: validated, checkpointed, loaded


@dataclass
class HeldOutDataConf:
    """`data.val` and `data.test`: a dataset scored whole (no split), in order, through its own
    transforms or, where it gives none, the training data's deterministic ones."""

    dataset: Any = None  # component: _target_ + params; null: none
    transforms: Optional[List[Any]] = None  # whole item; null: data.transforms, random ones left out
    sample_transforms: Optional[List[Any]] = None  # null: data's (both lists), random ones left out
    label_transforms: Optional[List[Any]] = None
    batch_size: Optional[int] = None  # null: data.batch_size (1 for whole volumes of different sizes)


@dataclass
class DataConf:
    dataset: Any = MISSING  # component: _target_ + params (root, labels, ...)
    transforms: List[Any] = field(default_factory=list)  # applied to the whole item first (MONAI dictionary transforms)
    keys: List[str] = field(default_factory=lambda: ["image", "label"])  # sample and target keys of mapping items
    sample_transforms: List[Any] = field(default_factory=list)  # applied to the sample only
    label_transforms: List[Any] = field(default_factory=list)  # applied to the label only
    batch_transforms: List[Any] = field(default_factory=list)  # to each collated training batch (MixUp, CutMix)
    split_ratio: float = 0.8  # share of items for training, the rest validates
    batch_size: int = 2
    num_workers: int = 0
    preload: bool = False  # cache items after their deterministic transforms
    # validation set of its own, scored every epoch (val/...); no dataset (or null): the split's share of
    # data.dataset. A node, as `test`, for `data.val={dataset: ...}` to merge into (onto null Hydra cannot)
    val: Optional[HeldOutDataConf] = field(default_factory=HeldOutDataConf)
    # held-out set: best.pt is evaluated on it after training (test/...). A node, not null, so that
    # `data.test={dataset: {...}}` and `data.test.dataset=...` on the command line have something to merge into
    test: Optional[HeldOutDataConf] = field(default_factory=HeldOutDataConf)


@dataclass
class PredictConf:
    """`frame predict`'s settings, kept in the run's config so an experiment can set them (its flags override)."""

    roi_size: Optional[List[int]] = None  # a SlidingWindowInferer of windows of this size; null: the run's inferer
    overlap: float = 0.25  # of roi_size's windows
    postprocess: str = "auto"  # auto (as the loss trains) | sigmoid (multi-label) | argmax (classes) | none (raw)
    threshold: float = 0.5  # sigmoid's


@dataclass
class TrainConf:
    name: str = MISSING  # run directory: outputs/<name>/
    project: Optional[str] = None  # a seed project's root (absolute): put on sys.path so `src.*` targets import
    seed: int = 0
    resume: bool = True  # continue from outputs/<name>/checkpoints when present
    fresh: bool = False  # move an existing run aside (outputs/<name>.<time>) and start over
    force_resume: bool = False  # resume even when model, data, seed, optimizer kind or world size changed
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING  # _partial_: gets the model's parameters in the loop
    lr_scheduler: Any = None  # _partial_: gets the optimizer in the loop; its `interval` (epoch | step) is frame's
    data: DataConf = field(default_factory=DataConf)
    trainer: TrainerConf = field(default_factory=TrainerConf)
    evaluators: Dict[str, Any] = field(default_factory=dict)  # name -> evaluator component
    logger: Dict[str, Any] = field(default_factory=dict)  # name -> metric logger component
    predict: PredictConf = field(default_factory=PredictConf)
    # how validation, the test set, `frame eval` and `frame predict` run the model on an input: a component
    # called as inferer(inputs, network) (MONAI's SlidingWindowInferer, SimpleInferer, ...); null: model(inputs)
    inferer: Any = None


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore and add frame's resolvers (once: building the schema's node
    from the dataclasses costs ~30 ms, and a command registers before each composition)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    if "base_train.yaml" not in store.repo:
        store.store(name="base_train", node=TrainConf)
    if not OmegaConf.has_resolver("len"):
        OmegaConf.register_new_resolver("len", lambda seq: len(seq))
    if not OmegaConf.has_resolver("run_suffix"):  # hydra.run.dir: outputs/<name><the overrides that change the result>
        from frame.config.rundir import run_suffix

        OmegaConf.register_new_resolver("run_suffix", run_suffix)
    if not OmegaConf.has_resolver("sub"):  # conf/lr_scheduler/warmup_cosine.yaml: the epochs after the warm-up
        OmegaConf.register_new_resolver("sub", lambda a, b: a - b)
