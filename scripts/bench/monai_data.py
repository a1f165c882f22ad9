"""A MONAI 3D data pipeline through frame against MONAI's own datasets and loaders.

The spleen tutorial's dictionary pipeline (LoadImaged, EnsureChannelFirstd, ScaleIntensityRanged,
CropForegroundd, Orientationd, Spacingd, then RandCropByPosNegLabeld with 4 crops a volume) on
synthetic NIfTI volumes written with nibabel (a bright blob as the organ, random voxel spacing and
axis flips in the affine, so Orientationd and Spacingd have work to do). Variants, each iterating
its training loader (batch 2 volumes = 8 crops, shuffled, no model):

    monai_dataset       monai.data.Dataset + DataLoader (no cache)
    monai_dataset_w2    the same with 2 loader workers
    monai_cache         CacheDataset (up to the first random transform) + ThreadDataLoader
    monai_persistent    PersistentDataset (the same prefix cached on disk) + DataLoader
    frame               frame's JobDataset + loader (data.preload=false), workers 0
    frame_w2            the same with data.num_workers=2
    frame_preload       data.preload=true (frame's CacheDataset), workers 0

Every variant's crops are seeded (MONAI's through Compose.set_random_state, frame's per item).
Reported per variant: build seconds (filling a cache included), the first epoch's and the later
epochs' crops per second, and each variant's later-epoch speed relative to monai_dataset in the
same round. Rounds are interleaved (every variant once per round); each run is a process of its own
that first warms up on two volumes.

    python scripts/bench/monai_data.py [--volumes N] [--size S] [--epochs E] [--rounds R] [--quick]
        [--variants monai_cache,frame_preload] [--base DIR]   # DIR: an older frame, e.g. from git archive
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import median

CROPS = 4


def make_volumes(root: Path, count: int, size: int, seed: int = 0) -> list[dict]:
    """`count` image/label NIfTI pairs of size^3 voxels: a noisy CT-like background (HU) with a
    bright ellipsoid as the organ, random spacing (0.7-1.6 mm) and random axis flips."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * 3).astype(np.float32) / size
    records = []
    for i in range(count):
        centre, radii = rng.uniform(0.35, 0.65, 3), rng.uniform(0.12, 0.25, 3)
        organ = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
        image = rng.normal(-200, 80, (size,) * 3).astype(np.float32)
        image[size // 8 : -size // 8, size // 8 : -size // 8, :] += 200  # the body: what CropForegroundd keeps
        image[organ] = rng.normal(100, 20, int(organ.sum()))
        affine = np.diag([*(rng.uniform(0.7, 1.6, 3) * rng.choice([-1, 1], 3)), 1.0])
        for name, array in (("image", image), ("label", organ.astype(np.uint8))):
            nib.save(nib.Nifti1Image(array, affine), root / f"{name}_{i:03d}.nii.gz")
        records.append({"image": str(root / f"image_{i:03d}.nii.gz"), "label": str(root / f"label_{i:03d}.nii.gz")})
    return records


def transforms(crop: int) -> list:
    from monai import transforms as mt

    keys = ["image", "label"]
    return [
        mt.LoadImaged(keys=keys, image_only=True),
        mt.EnsureChannelFirstd(keys=keys),
        mt.ScaleIntensityRanged(keys=["image"], a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
        mt.CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
        mt.Orientationd(keys=keys, axcodes="RAS"),
        mt.Spacingd(keys=keys, pixdim=(1.5, 1.5, 2.0), mode=("bilinear", "nearest")),
        mt.SpatialPadd(keys=keys, spatial_size=(crop,) * 3),
        mt.RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=(crop,) * 3,
            pos=1,
            neg=1,
            num_samples=CROPS,
            image_key="image",
            image_threshold=0,
        ),
    ]


def _monai(kind: str, records, crop: int, batch: int, cache_dir: Path):
    from monai import data as md
    from monai.transforms import Compose

    pipeline = Compose(transforms(crop)).set_random_state(seed=0)
    generator = torch.Generator().manual_seed(0)
    if kind == "monai_cache":
        dataset = md.CacheDataset(records, pipeline, cache_rate=1.0, num_workers=0, progress=False)
        return md.ThreadDataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, generator=generator), None
    if kind == "monai_persistent":
        dataset = md.PersistentDataset(records, pipeline, cache_dir=cache_dir)
    else:
        dataset = md.Dataset(records, pipeline)
    workers = 2 if kind.endswith("_w2") else 0
    return md.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        generator=generator,
        persistent_workers=workers > 0,
    ), None


def _frame(kind: str, records, crop: int, batch: int, cache_dir: Path):
    from frame.data.loading import EpochSampler, JobDataset, make_loader

    workers = 2 if kind.endswith("_w2") else 0
    dataset = JobDataset(
        records,
        range(len(records)),
        seed=0,
        item_transforms=transforms(crop),
        preload=kind == "frame_preload",
        preload_workers=workers,
    )
    sampler = EpochSampler(len(records), shuffle=True, seed=0, batch_size=batch)
    return make_loader(dataset, sampler, batch, workers, torch.device("cpu"), seed=0), sampler


VARIANTS = {
    "monai_dataset": _monai,
    "monai_dataset_w2": _monai,
    "monai_cache": _monai,
    "monai_persistent": _monai,
    "frame": _frame,
    "frame_w2": _frame,
    "frame_preload": _frame,
}


def run(kind: str, records, crop: int, batch: int, epochs: int) -> dict:
    """Build the variant's loader, then iterate it `epochs` times; crops per second per epoch."""
    with tempfile.TemporaryDirectory() as cache_dir:
        start, cpu = time.perf_counter(), time.process_time()
        loader, sampler = VARIANTS[kind](kind, records, crop, batch, Path(cache_dir))
        build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
        rates = []
        for epoch in range(epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            start, crops = time.perf_counter(), 0
            for batch in loader:  # MONAI's loaders give a dict, frame's an (images, labels) pair
                crops += len(batch["image"] if isinstance(batch, dict) else batch[0])
            rates.append(crops / (time.perf_counter() - start))
        del loader
    later = median(rates[1:]) if epochs > 1 else rates[0]
    return {"build_s": build_s, "build_cpu_s": build_cpu_s, "first": rates[0], "later": later}


def run_alone(kind: str, records, crop: int, epochs: int, pythonpath: str | None = None) -> dict:
    """`run` in a process of its own, after a warm-up on two volumes there: torch's thread settings are
    process-wide (frame's fill sets them, a plain MONAI script never does), so no variant inherits another's."""
    argv = [sys.executable, __file__, "--one", kind, "--crop", str(crop), "--epochs", str(epochs)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(argv, input=json.dumps(records), capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def bench(volumes: int, size: int, crop: int, epochs: int, rounds: int, kinds: list[str], base: str | None) -> dict:
    result = {
        "volumes": volumes,
        "size": size,
        "crop": crop,
        "crops_per_volume": CROPS,
        "epochs": epochs,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
    }
    # (label, kind, PYTHONPATH): `--base DIR` adds frame's variants run on the frame package found in DIR
    candidates = [(kind, kind, None) for kind in kinds]
    if base:
        candidates += [(f"{kind}@base", kind, base) for kind in kinds if kind.startswith("frame")]
    with tempfile.TemporaryDirectory() as tmp:
        records = make_volumes(Path(tmp), volumes, size)
        runs = {label: [] for label, _, _ in candidates}
        for _ in range(rounds):
            for label, kind, path in candidates:
                runs[label].append(run_alone(kind, records, crop, epochs, path))
    reference = "monai_dataset" if "monai_dataset" in runs else candidates[0][0]
    for label, measured in runs.items():
        ratios = [m["later"] / ref["later"] for m, ref in zip(measured, runs[reference])]
        result[label] = {
            "build_s": round(median([m["build_s"] for m in measured]), 3),
            "build_cpu_s": round(median([m["build_cpu_s"] for m in measured]), 3),
            "first_epoch_crops_per_s": round(median([m["first"] for m in measured]), 2),
            "later_epochs_crops_per_s": round(median([m["later"] for m in measured]), 2),
            f"later_vs_{reference}": round(median(ratios), 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=12)
    parser.add_argument("--size", type=int, default=64, help="voxels along each axis")
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--base", help="also run frame's variants on the frame package under this directory")
    parser.add_argument("--quick", action="store_true", help="4 volumes of 32^3, 16^3 crops, 2 epochs, 1 round")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child of run_alone: records on stdin
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.size, args.crop, args.epochs, args.rounds = 4, 32, 16, 2, 1
    from monai.utils import set_determinism

    set_determinism(0)
    warnings.filterwarnings("ignore", category=FutureWarning)  # Orientationd's note on its `labels` default
    if args.one:
        records = json.loads(sys.stdin.read())
        run(args.one, records[:2], args.crop, 2, 1)  # warm-up: first imports, MONAI's first calls, worker start
        print(json.dumps(run(args.one, records, args.crop, 2, args.epochs)))
        return
    kinds = args.variants.split(",")
    print(json.dumps(bench(args.volumes, args.size, args.crop, args.epochs, args.rounds, kinds, args.base), indent=2))


if __name__ == "__main__":
    main()
