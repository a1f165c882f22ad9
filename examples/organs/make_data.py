"""Write a small synthetic head-and-neck CT data set as NIfTI files, so the example needs no download.

    python make_data.py                       # data/train: 16 patients, 96 x 96 x 32 voxels
    python make_data.py --patients 6 --size 48 48 16 --out /tmp/organs

Layout (that of the seed's organ-at-risk data, in NIfTI):

    <out>/<patient>/img.nii.gz                     CT in Hounsfield units, float32, (x, y, z)
    <out>/<patient>/structures/<Organ>.nii.gz      one binary mask per organ, uint8

The nine organs are those of the seed's job. Every organ is an ellipsoid (the
mandible an arc) with its own CT value, position and size varying per patient,
inside a head of soft tissue with a skull, plus noise. Patient p is a pure
function of (seed, p).
"""

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

# Organ -> (centre as a fraction of the volume (x, y, z), radii as fractions, HU). Later organs paint over earlier ones.
ORGANS = {
    "Parotid_L": ((0.74, 0.56, 0.42), (0.08, 0.10, 0.14), -30.0),
    "Parotid_R": ((0.26, 0.56, 0.42), (0.08, 0.10, 0.14), -30.0),
    "Submandibular_L": ((0.64, 0.38, 0.22), (0.06, 0.06, 0.08), 70.0),
    "Submandibular_R": ((0.36, 0.38, 0.22), (0.06, 0.06, 0.08), 70.0),
    "BrainStem": ((0.50, 0.60, 0.62), (0.07, 0.08, 0.20), 25.0),
    "OpticNerve_L": ((0.58, 0.32, 0.74), (0.03, 0.11, 0.05), 55.0),
    "OpticNerve_R": ((0.42, 0.32, 0.74), (0.03, 0.11, 0.05), 55.0),
    "Chiasm": ((0.50, 0.44, 0.76), (0.08, 0.03, 0.05), 85.0),
}
MANDIBLE = ((0.50, 0.46, 0.24), (0.30, 0.26, 0.10), 900.0)  # an arc: outer ellipsoid minus inner, front half
LABELS = [
    "BrainStem",
    "Chiasm",
    "Mandible",
    "OpticNerve_L",
    "OpticNerve_R",
    "Parotid_L",
    "Parotid_R",
    "Submandibular_L",
    "Submandibular_R",
]
SPACING = (1.0, 1.0, 2.5)  # mm per voxel (x, y, z), written into the affine


def patient(seed: int, index: int, size) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(CT volume, {organ: mask}) of one synthetic patient; masks do not overlap."""
    rng = np.random.default_rng([seed, index])
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, s) for s in size], indexing="ij"))
    shift = rng.uniform(-0.03, 0.03, 3)  # the whole head moves a little per patient
    head = _ellipsoid(grid, (0.5, 0.5, 0.5) + shift, (0.44, 0.46, 0.62))
    inner = _ellipsoid(grid, (0.5, 0.5, 0.5) + shift, (0.40, 0.42, 0.58))
    ct = np.where(head, 40.0, -1000.0)
    ct = np.where(head & ~inner & (grid[2] > 0.45), 700.0, ct)  # skull around the brain
    owner = np.full(size, "", dtype=object)  # which organ a voxel shows: later organs paint over earlier ones
    for name, (centre, radii, hu) in ORGANS.items():
        inside = _ellipsoid(
            grid, np.add(centre, shift + rng.uniform(-0.02, 0.02, 3)), np.multiply(radii, rng.uniform(0.85, 1.15, 3))
        )
        ct = np.where(inside, hu + rng.normal(0, 5), ct)
        owner[inside] = name
    centre, radii, hu = MANDIBLE
    centre = np.add(centre, shift)
    hollow = _ellipsoid(grid, centre, np.multiply(radii, (0.8, 0.75, 1.2)))
    arc = _ellipsoid(grid, centre, radii) & ~hollow & (grid[1] < centre[1])
    ct = np.where(arc, hu, ct)
    owner[arc] = "Mandible"
    ct = ct + rng.normal(0.0, 20.0, size)
    return ct.astype(np.float32), {name: (owner == name).astype(np.uint8) for name in LABELS}


def _ellipsoid(grid, centre, radii):
    offsets = (grid - np.asarray(centre)[:, None, None, None]) / np.asarray(radii)[:, None, None, None]
    return (offsets**2).sum(0) <= 1.0


def write(out: Path, patients: int, size, seed: int = 0) -> None:
    affine = np.diag([*SPACING, 1.0])
    for index in range(patients):
        folder = out / f"patient_{index:03d}"
        (folder / "structures").mkdir(parents=True, exist_ok=True)
        ct, masks = patient(seed, index, size)
        nib.save(nib.Nifti1Image(ct, affine), folder / "img.nii.gz")
        for name, mask in masks.items():
            nib.save(nib.Nifti1Image(mask, affine), folder / "structures" / f"{name}.nii.gz")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "data" / "train"), help="default: data/train here")
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=3, default=[96, 96, 32], metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write(Path(args.out), args.patients, tuple(args.size), args.seed)
    print(f"wrote {args.patients} patients of {' x '.join(map(str, args.size))} voxels to {args.out}")


if __name__ == "__main__":
    main()
