"""Synthetic data sets that need no files and no network.

Every item is a pure function of (seed, index), so a data set of any size costs
no memory until it is read and two runs see the same data.
"""

import numpy as np
import torch
from torch.utils.data import Dataset

# Organ name -> (centre as fraction of the volume (z, y, x), radii as fraction, HU value).
# Kidneys share an intensity and differ only by side, so position matters.
_ORGANS = {
    "liver": ((0.50, 0.45, 0.30), (0.18, 0.20, 0.16), 60.0),
    "spleen": ((0.50, 0.45, 0.75), (0.12, 0.12, 0.10), 45.0),
    "kidney_l": ((0.55, 0.70, 0.62), (0.10, 0.08, 0.08), 150.0),
    "kidney_r": ((0.55, 0.70, 0.38), (0.10, 0.08, 0.08), 150.0),
    "pancreas": ((0.45, 0.55, 0.55), (0.06, 0.06, 0.14), 40.0),
    "bladder": ((0.80, 0.50, 0.50), (0.08, 0.10, 0.10), 10.0),
}


class SyntheticOrgans(Dataset):
    """CT-like 3D volumes (Hounsfield units) with one mask channel per organ.

    Items are `(volume[1, D, H, W], masks[len(labels), D, H, W])`, float32.
    Organ positions, sizes and noise vary per item.

    Args:
        labels: organ names, in channel order; None picks all known organs.
        num_samples: number of volumes.
        size: volume shape (D, H, W).
        noise_hu: standard deviation of the image noise in HU.
        seed: base seed; item i uses (seed, i).

    Raises:
        ValueError: a label that is not a known organ.
    """

    def __init__(self, labels=None, num_samples=24, size=(32, 32, 32), noise_hu=25.0, seed=0):
        self.labels = list(labels) if labels is not None else list(_ORGANS)
        unknown = [name for name in self.labels if name not in _ORGANS]
        if unknown:
            raise ValueError(f"SyntheticOrgans has no organ {unknown}; it knows {list(_ORGANS)}")
        self.num_samples = int(num_samples)
        self.size = tuple(int(s) for s in size)
        self.noise_hu = float(noise_hu)
        self.seed = int(seed)
        self._grid = np.stack(np.meshgrid(*[np.linspace(0, 1, s) for s in self.size], indexing="ij"))

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        grid = self._grid
        body = _ellipsoid(grid, (0.5, 0.5, 0.5), (0.45, 0.40, 0.46))
        volume = np.where(body, 0.0, -1000.0)  # soft tissue inside air
        masks = np.zeros((len(self.labels),) + self.size, dtype=np.float32)
        for name, (centre, radii, hu) in _ORGANS.items():
            centre = np.asarray(centre) + rng.uniform(-0.05, 0.05, 3)
            radii = np.asarray(radii) * rng.uniform(0.85, 1.15, 3)
            inside = _ellipsoid(grid, centre, radii)
            volume = np.where(inside, hu + rng.normal(0, 5), volume)
            if name in self.labels:
                masks[self.labels.index(name)] = inside
        volume = volume + rng.normal(0.0, self.noise_hu, self.size)
        return torch.from_numpy(volume[None].astype(np.float32)), torch.from_numpy(masks)


def _ellipsoid(grid, centre, radii):
    offsets = (grid - np.asarray(centre)[:, None, None, None]) / np.asarray(radii)[:, None, None, None]
    return (offsets**2).sum(0) <= 1.0


class SyntheticClasses(Dataset):
    """Gaussian clusters: items are `(features[num_features], class_index)`.

    Args:
        num_samples: number of items.
        num_features: vector length.
        num_classes: number of clusters; `.labels` names them class_0, class_1, ...
        spread: cluster standard deviation relative to the distance between centres.
        seed: base seed.
    """

    def __init__(self, num_samples=512, num_features=16, num_classes=4, spread=0.6, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.num_classes = int(num_classes)
        self.labels = [f"class_{i}" for i in range(self.num_classes)]
        centres = torch.randn(self.num_classes, num_features, generator=generator) * 2
        self.targets = torch.randint(0, self.num_classes, (num_samples,), generator=generator)
        noise = torch.randn(num_samples, num_features, generator=generator) * 2 * spread
        self.features = centres[self.targets] + noise

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.features[index], self.targets[index]
