"""Generic tensor transforms that seed-style jobs use by name."""

import torch


class Transpose:
    """Swap two dimensions: `Transpose(dim_1=0, dim_2=-1)`.

    On a MONAI MetaTensor the affine's columns follow the spatial axes, so every voxel keeps its
    world position (`frame predict` writes label maps back onto the input's grid from it). The
    channel axis is the one `meta["channel_dim"]` names (a dataset with channel-last items, as the
    seed's were, sets -1), else the first (MONAI's layout); the swap records where it went.
    """

    def __init__(self, dim_1: int, dim_2: int):
        self.dim_1, self.dim_2 = dim_1, dim_2

    def __call__(self, tensor):
        swapped = torch.as_tensor(tensor).transpose(self.dim_1, self.dim_2)
        meta = getattr(swapped, "meta", None)  # a MetaTensor's (its own shallow copy)
        if meta is not None and swapped.affine.shape == (swapped.ndim, swapped.ndim):  # one channel + spatial axes
            axes = list(range(swapped.ndim))  # new position -> old axis
            axes[self.dim_1], axes[self.dim_2] = axes[self.dim_2], axes[self.dim_1]
            channel = meta.get("channel_dim", 0) % swapped.ndim
            spatial = [axis for axis in axes if axis != channel]
            order = [sorted(spatial).index(axis) for axis in spatial]  # new spatial axis -> old affine column
            affine = swapped.affine.clone()
            affine[:, :-1] = affine[:, order]
            swapped.affine, meta["channel_dim"] = affine, axes.index(channel)
        return swapped

    def __repr__(self):
        return f"Transpose(dim_1={self.dim_1}, dim_2={self.dim_2})"


class StandardScaleTensor:
    """Shift and scale a tensor to zero mean and unit variance (per item)."""

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, tensor):
        tensor = torch.as_tensor(tensor, dtype=torch.float32)
        return (tensor - tensor.mean()) / (tensor.std() + self.eps)

    def __repr__(self):
        return "StandardScaleTensor()"
