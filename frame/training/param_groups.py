"""The optimizer's parameter groups, from frame's keys in the `optimizer` node (never passed to its class).

    norm_weight_decay: 0.0        weight decay of normalisation layers' weights and biases (torchvision's
                                  reference `--norm-weight-decay`; timm leaves them undecayed too)
    bias_weight_decay: 0.0        weight decay of every bias (torchvision's `--bias-weight-decay`); wins
                                  over norm_weight_decay for a norm layer's bias, as in torchvision
    param_groups:                 a sub-module of the model by its name in `model.named_modules()`, with
      - {params: backbone, lr: 1e-4}   its own optimizer options (fine-tuning a backbone at a lower rate)

A parameter belongs to the first listed group whose module holds it; the rest keep the optimizer's own
settings and come first, so `train/lr` is the rate of everything not listed.
"""

import torch
from omegaconf import DictConfig, OmegaConf

from frame.config.walk import FRAME_KEYS
from frame.core.errors import FrameError, did_you_mean

# torchvision.ops._utils / references/classification/utils.set_weight_decay's norm classes
NORM_CLASSES = (
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
    torch.nn.LocalResponseNorm,
)


def parameter_groups(model: torch.nn.Module, node: DictConfig) -> list:
    """What the optimizer's class gets: the trainable parameters, or a list of group dicts when the
    node sets any of frame's keys (FRAME_KEYS['optimizer']).

    Raises:
        FrameError: a group naming no sub-module of the model (with a did-you-mean), or without `params`.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    settings = {
        key: OmegaConf.to_container(node[key], resolve=True) if OmegaConf.is_config(node[key]) else node[key]
        for key in FRAME_KEYS["optimizer"]
        if node.get(key) is not None
    }
    if not settings:
        return [p for _, p in trainable]
    named = settings.get("param_groups") or []
    owner = _owners(model, named)
    norms = {
        id(p)
        for module in model.modules()
        if isinstance(module, NORM_CLASSES)
        for p in module.parameters(recurse=False)
    }
    groups: dict[tuple, list] = {}
    for name, p in trainable:
        decay = None
        if "bias_weight_decay" in settings and name.endswith("bias"):
            decay = settings["bias_weight_decay"]
        elif "norm_weight_decay" in settings and id(p) in norms:
            decay = settings["norm_weight_decay"]
        groups.setdefault((owner.get(id(p), -1), decay), []).append(p)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] is not None, item[0][1] or 0.0))
    result = []
    for (index, decay), params in ordered:
        options = {k: v for k, v in named[index].items() if k != "params"} if index >= 0 else {}
        result.append({"params": params, **options, **({"weight_decay": decay} if decay is not None else {})})
    return result


def check_options(optimizer: torch.optim.Optimizer, node: DictConfig) -> None:
    """A group option the optimizer does not know (torch keeps it silently and ignores it).

    Raises:
        FrameError: naming the group, the option and the options the optimizer has.
    """
    for index, group in enumerate(node.get("param_groups") or []):
        for key in group:
            if key != "params" and key not in optimizer.defaults:
                known = sorted(optimizer.defaults)
                raise FrameError(
                    f"optimizer.param_groups[{index}].{key}: {type(optimizer).__name__} has no option "
                    f"'{key}'.{did_you_mean(key, known)} Its options: {', '.join(known)}."
                )


def _owners(model: torch.nn.Module, named: list) -> dict[int, int]:
    """id(parameter) -> index of the first group whose sub-module holds it."""
    modules = dict(model.named_modules())
    owner: dict[int, int] = {}
    for index, group in enumerate(named):
        name = group.get("params") if isinstance(group, dict) else None
        if not isinstance(name, str) or not name:
            raise FrameError(
                f"optimizer.param_groups[{index}]: expected {{params: <sub-module name>, <option>: "
                f"<value>, ...}}, e.g. {{params: backbone, lr: 1.0e-4}}; got {group!r}."
            )
        if name not in modules:
            top = [n for n in modules if n and "." not in n]
            raise FrameError(
                f"optimizer.param_groups[{index}].params={name}: {type(model).__name__} has no sub-module "
                f"'{name}'.{did_you_mean(name, [n for n in modules if n])} Its top-level sub-modules: "
                f"{', '.join(top) or 'none'}."
            )
        for p in modules[name].parameters():
            owner.setdefault(id(p), index)
    return owner
