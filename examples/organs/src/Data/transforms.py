"""Transforms of this project (frame's own Transpose and StandardScaleTensor are used by name too)."""

import torch


class CropAroundBrainStem:
    """Cut a `width x height x depth` box centred on the brainstem out of a channel-first volume.

    The volume is `(channels, y, z, x)`: a PatientDataset item after `Transpose(dim_1=0, dim_2=-1)`,
    so width runs along x, height along y and depth along z. The centre is the brainstem centroid
    (x, y, z) that PatientDataset records in `meta["brainstem_center"]`, the same for the CT and its
    masks, so both are cut alike. A box reaching past the volume is padded with the volume's minimum
    (air for the CT, background for a mask). On a MetaTensor the box's affine is the volume's
    shifted to the box's first voxel, so the box stays where it was in the world.

    Args:
        width, height, depth: box size in voxels along x, y and z.
    """

    def __init__(self, width: int, height: int, depth: int):
        self.width, self.height, self.depth = width, height, depth

    def __call__(self, volume):
        x, y, z = volume.meta["brainstem_center"]
        tensor = volume.as_tensor() if hasattr(volume, "as_tensor") else torch.as_tensor(volume)
        box = torch.full(
            (tensor.shape[0], self.height, self.depth, self.width), float(tensor.min()), dtype=tensor.dtype
        )
        source, target, starts = [slice(None)], [slice(None)], []
        for centre, size, length in (
            (y, self.height, tensor.shape[1]),
            (z, self.depth, tensor.shape[2]),
            (x, self.width, tensor.shape[3]),
        ):
            start = centre - size // 2
            lo, hi = max(start, 0), min(start + size, length)
            source.append(slice(lo, hi))
            target.append(slice(lo - start, hi - start))
            starts.append(start)
        box[tuple(target)] = tensor[tuple(source)]
        if not hasattr(volume, "affine"):
            return box
        from monai.data import MetaTensor

        shift = torch.eye(4, dtype=torch.float64)
        shift[:3, 3] = torch.tensor(starts, dtype=torch.float64)
        meta = {key: value for key, value in volume.meta.items() if key != "affine"}
        return MetaTensor(box, affine=volume.affine @ shift, meta=meta)

    def __repr__(self):
        return f"CropAroundBrainStem(width={self.width}, height={self.height}, depth={self.depth})"
