"""An exponential moving average of the weights (`trainer.ema`), as torchvision's reference recipe keeps it.

torchvision's `ExponentialMovingAverage` is `torch.optim.swa_utils.AveragedModel` with an EMA update
over parameters and buffers (BatchNorm's running statistics too); so is this. Every
`every_n_steps` optimizer steps: `ema = decay * ema + (1 - decay) * weights`; during the first
`warmup_steps` steps it copies the weights instead (the reference resets it during the LR warm-up).

The average is what validation scores (`val/...`, hence best.pt), what checkpoints carry under "ema"
and what `frame.load_model`, `frame eval` and `frame predict` load, unless asked for the raw weights.
"""

import logging

import torch
from omegaconf import DictConfig
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

log = logging.getLogger("frame")


class WeightAverage:
    """The averaged copy of a model, updated after optimizer steps."""

    def __init__(
        self, model: torch.nn.Module, decay: float, every_n_steps: int = 1, warmup_steps: int = 0, validate: str = "ema"
    ):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.requires_grad_(False)
        self.every, self.warmup = every_n_steps, warmup_steps
        self.both = validate == "both"  # also score the raw weights, as val_raw/...

    @property
    def model(self) -> torch.nn.Module:
        """The averaged model itself (the same class and state_dict keys as the trained one)."""
        return self.averaged.module

    def update(self, model: torch.nn.Module, step: int) -> None:
        """After optimizer step `step` (counted from 1) of `model` (the plain module, not a DDP wrapper)."""
        if step % self.every:
            return
        self.averaged.update_parameters(model)
        if step < self.warmup:
            self.averaged.n_averaged.fill_(0)  # the next update copies the weights again (up to step `warmup`)

    def state_dict(self) -> dict:
        return {"weights": self.model.state_dict(), "n_averaged": int(self.averaged.n_averaged)}

    def load_state_dict(self, saved: dict) -> None:
        self.model.load_state_dict(saved["weights"])
        self.averaged.n_averaged.fill_(saved["n_averaged"])


def build_ema(node: DictConfig, model: torch.nn.Module) -> WeightAverage | None:
    """`trainer.ema` of a config (decay null: none)."""
    if node is None or node.get("decay") is None:
        return None
    validate = getattr(node.validate, "value", node.validate)
    return WeightAverage(model, node.decay, node.every_n_steps, node.warmup_steps, validate)


def trained_weights(saved: dict, ema: bool = True) -> dict:
    """The model weights of a checkpoint: its EMA when it has one and `ema`, else the raw ones."""
    if ema and saved.get("ema") is not None:
        return saved["ema"]["weights"]
    return saved["model"]
