"""Generic tensor transforms that seed-style jobs use by name."""

import torch


class Transpose:
    """Swap two dimensions: `Transpose(dim_1=0, dim_2=-1)`."""

    def __init__(self, dim_1: int, dim_2: int):
        self.dim_1, self.dim_2 = dim_1, dim_2

    def __call__(self, tensor):
        return torch.as_tensor(tensor).transpose(self.dim_1, self.dim_2)

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
