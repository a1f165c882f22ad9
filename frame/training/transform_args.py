"""What YAML cannot spell for torchvision's transforms, and a sample pipeline that never makes a tensor.

YAML and JSON have no `torch.float32` or `InterpolationMode.BILINEAR`: written as strings
(`ToDtype(dtype: float32)`, `Resize(interpolation: bilinear)`), torchvision would fail at the first
batch, or take a string it compares with nothing. `torchvision_args` reads such a string as the
object it names, where that is unambiguous, and says so in the log; a string that names nothing is
an error naming the transform. `untensored` explains a batch that cannot be collated because the
samples are still PIL images (no `ToImage`/`ToTensor` at the end of the pipeline).
"""

import copy
import logging

import torch
from omegaconf import DictConfig, ListConfig

from frame.core.errors import FrameError, did_you_mean

log = logging.getLogger("frame")

_TORCHVISION = "torchvision.transforms."


def torchvision_args(node, key: str):
    """`node` (a copy, when anything changes) with string `dtype`/`interpolation` params of torchvision
    transforms, at any depth (inside `Compose`, `RandomChoice`), replaced by nodes that build the object.

    Raises:
        FrameError: a string that names no torch dtype or InterpolationMode.
    """
    found = list(_torchvision_strings(node, key))
    if not found:
        return node
    node = copy.deepcopy(node)
    for path, where, param, value in found:
        built, shown = _object_node(param, value, where)
        _select(node, path)[param] = built
        log.info("%s.%s: the string %r read as %s", where, param, value, shown)
    return node


def _torchvision_strings(node, key: str, path=()):
    """(path in node, config key, param, value) of each string dtype or interpolation of a torchvision transform."""
    if isinstance(node, DictConfig):
        target = node.get("_target_")
        if isinstance(target, str) and target.startswith(_TORCHVISION):
            for param in ("dtype", "interpolation"):
                value = node.get(param)
                if isinstance(value, str):
                    yield path, key, param, value
        for name, value in node.items():
            if isinstance(value, (DictConfig, ListConfig)):
                yield from _torchvision_strings(value, f"{key}.{name}", (*path, name))
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            yield from _torchvision_strings(value, f"{key}[{index}]", (*path, index))


def _select(node, path):
    for part in path:
        node = node[part]
    return node


def _object_node(param: str, value: str, where: str) -> tuple[dict, str]:
    """(a node that Hydra instantiates into the dtype or mode `value` names, how the log shows it)."""
    name = value.strip().rsplit(".", 1)[-1]
    if param == "dtype":
        if not isinstance(getattr(torch, name, None), torch.dtype):
            known = sorted(n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype))
            raise FrameError(
                f"{where}.dtype={value!r} names no torch dtype.{did_you_mean(name, known)} "
                f"Write e.g. float32, uint8 or torch.float32.",
                key=f"{where}.dtype",
            )
        return {"_target_": "hydra.utils.get_object", "path": f"torch.{name}"}, f"torch.{name}"
    from torchvision.transforms import InterpolationMode

    modes = [mode.value for mode in InterpolationMode]
    if name.lower() not in modes:
        raise FrameError(
            f"{where}.interpolation={value!r} is not an InterpolationMode.{did_you_mean(name.lower(), modes)} "
            f"One of: {', '.join(modes)}.",
            key=f"{where}.interpolation",
        )
    return (
        {"_target_": "torchvision.transforms.InterpolationMode", "value": name.lower()},
        f"InterpolationMode.{name.upper()}",
    )


def untensored(items: list, dataset) -> FrameError | None:
    """Why `items` (a batch's (sample, target) pairs, before collation) cannot be collated, naming the
    last sample or label transform, or None when every part is a tensor, an array or a number."""
    import numpy as np

    pairs = [pair for item in items for pair in (item if isinstance(item, list) else [item])]
    for pair in pairs:
        for part, kind in zip(pair, ("sample", "label")):
            if isinstance(part, (torch.Tensor, np.ndarray, int, float, bool)):
                continue
            transforms = [*getattr(dataset, f"_fixed_{kind}", []), *getattr(dataset, f"_random_{kind}", [])]
            last = (
                f"the last of data.{kind}_transforms is {type(transforms[-1]).__name__}"
                if transforms
                else f"data.{kind}_transforms is empty"
            )
            return FrameError(
                f"the {kind} of an item is a {type(part).__module__}.{type(part).__name__} after its "
                f"transforms ({last}); a batch needs tensors. End data.{kind}_transforms with one that "
                f"makes a tensor, e.g. torchvision.transforms.v2.ToImage then ToDtype(dtype: float32, "
                f"scale: true), or torchvision.transforms.ToTensor."
            )
    return None
