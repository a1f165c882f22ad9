"""Head-and-neck CT volumes with one mask per organ, read from NIfTI through MONAI."""

from pathlib import Path

import torch
from torch.utils.data import Dataset


class PatientDataset(Dataset):
    """One item per patient folder: `root/<patient>/img.nii.gz` and `root/<patient>/structures/<Organ>.nii.gz`.

    Items are `(ct, masks)`: the CT as `(x, y, z, 1)` and the masks as `(x, y, z, len(labels))`,
    channel-last in the NIfTI's own axis order, as the seed's loaders returned them (the job's
    `Transpose(0, -1)` puts the channel first). Both are MONAI MetaTensors with the CT's metadata
    as LoadImage reads it (its affine: voxel to world), `meta["channel_dim"] = -1` for the
    channel-last layout, and `meta["brainstem_center"]`, the brainstem's centroid (voxel index
    x, y, z) that `CropAroundBrainStem` centres its box on. The transforms keep the affine up to
    date, so `frame predict` writes its label maps onto the CT's own grid. A patient without a mask
    for an organ gets an empty one.

    Args:
        root: the folder of patient folders.
        labels: organs, in channel order; None takes all of `LABELS`.

    Raises:
        ValueError: a label that is not an organ of `LABELS`, or a root without patients.
    """

    # What this dataset can provide; `frame check` reads it to reject a misspelt label before training.
    LABELS = (
        "BrainStem",
        "Chiasm",
        "Mandible",
        "OpticNerve_L",
        "OpticNerve_R",
        "Parotid_L",
        "Parotid_R",
        "Submandibular_L",
        "Submandibular_R",
    )

    def __init__(self, root, labels=None):
        from monai.transforms import LoadImage

        self.root = Path(root)
        self.labels = list(labels) if labels is not None else list(self.LABELS)
        unknown = [label for label in self.labels if label not in self.LABELS]
        if unknown:
            raise ValueError(f"PatientDataset has no organ {unknown}; it knows {list(self.LABELS)}")
        self.patients = sorted(p for p in self.root.iterdir() if (p / "img.nii.gz").is_file())
        if not self.patients:
            raise ValueError(f"no patient folders with img.nii.gz under {self.root}")
        self._load = LoadImage(image_only=True, dtype=None)

    def __len__(self):
        return len(self.patients)

    def __getitem__(self, index):
        from monai.data import MetaTensor

        folder = self.patients[index]
        ct = self._load(folder / "img.nii.gz").float()
        masks = {label: self._mask(folder, label, ct.shape) for label in set(self.labels) | {"BrainStem"}}
        meta = {**ct.meta, "channel_dim": -1, "brainstem_center": _centroid(masks["BrainStem"]), "patient": folder.name}
        sample = MetaTensor(ct.as_tensor()[..., None], meta=meta)
        label = MetaTensor(torch.stack([masks[name] for name in self.labels], dim=-1), meta=dict(meta))
        return sample, label

    def _mask(self, folder: Path, label: str, shape) -> torch.Tensor:
        path = folder / "structures" / f"{label}.nii.gz"
        if not path.is_file():
            return torch.zeros(shape)
        return (self._load(path).as_tensor() > 0).float()


def _centroid(mask: torch.Tensor) -> tuple[int, int, int]:
    """The mean voxel index of a mask; the volume's centre when the mask is empty."""
    points = mask.nonzero().float()
    centre = points.mean(0) if len(points) else torch.tensor(mask.shape, dtype=torch.float) / 2
    return tuple(int(round(float(c))) for c in centre)
