"""Dictionary items with MONAI dictionary transforms on real NIfTI files, tuples with extras, the item
contract's error, and preload stopping at the first Randomizable (as MONAI's CacheDataset)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import EnsureChannelFirstd, LoadImaged, RandCropByPosNegLabeld, Randomizable

from frame.core.errors import FrameError
from frame.data.datalist import Datalist
from frame.data.loading import EpochSampler, JobDataset, make_loader
from tests.conftest import metrics, run_frame

LABELS = {"0": "background", "1": "ball", "2": "box"}


def make_project(root: Path, n: int = 6, size: int = 16) -> Path:
    """NIfTI volumes (a ball labelled 1, a box labelled 2, noise) and a MONAI datalist beside them."""
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True, exist_ok=True)
    grid, records = np.indices((size,) * 3), []
    for i in range(n):
        label = np.zeros((size,) * 3, np.uint8)
        centre = rng.integers(5, size - 5, 3)
        label[((grid - centre[:, None, None, None]) ** 2).sum(0) < 9] = 1
        corner = rng.integers(2, size - 6, 3)
        label[corner[0] : corner[0] + 4, corner[1] : corner[1] + 4, corner[2] : corner[2] + 4] = 2
        image = label * 100.0 + rng.normal(0, 20, label.shape)
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), root / "data" / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "data" / f"lbl{i}.nii.gz")
        records.append({"image": f"data/img{i}.nii.gz", "label": f"data/lbl{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": LABELS, "training": records}))
    return root / "dataset.json"


def _pipeline():
    keys = ["image", "label"]
    return [
        LoadImaged(keys),
        EnsureChannelFirstd(keys),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=(8, 8, 8), num_samples=2),
    ]


def test_crops_of_a_dictionary_pipeline_become_batch_items_reproducibly(tmp_path):
    datalist = Datalist(make_project(tmp_path))
    assert datalist.labels == ["background", "ball", "box"] and len(datalist) == 6
    items = JobDataset(datalist, range(6), seed=3, item_transforms=_pipeline())
    loader = make_loader(items, EpochSampler(6, shuffle=False, batch_size=3), 3, 0, torch.device("cpu"), 0)
    sample, target = next(iter(loader))
    assert sample.shape == (6, 1, 8, 8, 8) and target.shape == (6, 1, 8, 8, 8)  # 3 items x 2 crops
    assert type(sample) is torch.Tensor  # MetaTensors leave collation as plain tensors
    again = JobDataset(datalist, range(6), seed=3, item_transforms=_pipeline())
    first, second = items[(1, 4)], again[(1, 4)]  # same (epoch, index): same crops, whichever dataset object
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, items[(2, 4)]))  # another epoch: other crops


class Counting:
    """A deterministic dictionary transform that counts its calls."""

    calls = 0

    def __call__(self, item):
        Counting.calls += 1
        return item


class Jitter(Randomizable):
    """A project's random transform: Randomizable, so preload stops before it."""

    def randomize(self, data=None):
        self.shift = self.R.uniform(-1, 1)

    def __call__(self, item):
        self.randomize()
        return {**item, "image": item["image"] + self.shift}


def test_preload_caches_up_to_the_first_randomizable(tmp_path):
    datalist = Datalist(make_project(tmp_path, n=4))
    keys = ["image", "label"]
    Counting.calls = 0
    items = JobDataset(
        datalist,
        range(4),
        preload=True,
        item_transforms=[LoadImaged(keys), EnsureChannelFirstd(keys), Counting(), Jitter()],
    )
    assert Counting.calls == 4  # filled once
    a, b = items[(0, 1)][0], items[(1, 1)][0]
    assert Counting.calls == 4 and not torch.equal(a, b)  # the cache is read; Jitter runs per epoch
    assert torch.equal(a, items[(0, 1)][0])


def test_tuple_items_with_extras_and_a_wrong_item_named(tmp_path):
    with_index = [(torch.ones(2), torch.tensor(1), i) for i in range(4)]
    assert JobDataset(with_index, range(4))[(0, 2)][1] == 1
    with pytest.raises(
        FrameError,
        match=r"data.dataset \(list\) returned a Tensor for item 0; an item is a "
        r"\(sample, target, \*extra\) tuple, or a mapping",
    ):
        JobDataset([torch.ones(2)] * 2, range(2))[0]
    with pytest.raises(FrameError, match=r"keys \['img', 'seg'\], without 'image', 'label' \(data.keys"):
        JobDataset([{"img": 1, "seg": 2}], range(1))[0]


@pytest.mark.slow
def test_a_monai_style_json_job_on_nifti_trains_with_library_metrics(tmp_path):
    make_project(tmp_path)
    (tmp_path / "config").mkdir()
    keys = ["image", "label"]
    job = {
        "model": {
            "name": "UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "channels": [4, 8],
            "strides": [2],
        },
        "training": {
            "epochs": 2,
            "batch_size": 2,
            "split_ratio": 0.67,
            "monitor": "val/dice",
            "monitor_mode": "max",
            "loss": {"name": "DiceCELoss", "to_onehot_y": True, "softmax": True},
            "optimizer": {"name": "Adam", "learning_rate": 0.01},
            "lr_scheduler": {"name": "ReduceLROnPlateau", "patience": 1},
            "dataset": {
                "name": "Datalist",
                "path": "dataset.json",
                "num_workers": 2,
                "transforms": [
                    {"name": "LoadImaged", "keys": keys},
                    {"name": "EnsureChannelFirstd", "keys": keys},
                    {
                        "name": "ScaleIntensityRanged",
                        "keys": ["image"],
                        "a_min": -50,
                        "a_max": 250,
                        "b_min": 0,
                        "b_max": 1,
                    },
                    {
                        "name": "RandCropByPosNegLabeld",
                        "keys": keys,
                        "label_key": "label",
                        "spatial_size": [8, 8, 8],
                        "num_samples": 2,
                    },
                ],
            },
        },
        "evaluators": [
            {"name": "Dice"},
            {"name": "DiceMetric", "include_background": False, "activation": "softmax", "key": "monai_dice"},
            {"name": "MulticlassF1Score", "num_classes": 3, "activation": "softmax"},
        ],
    }
    (tmp_path / "config" / "seg.json").write_text(json.dumps(job))
    run_frame(["run", "config/seg.json"], cwd=tmp_path, check=0)
    records = metrics(tmp_path / "outputs" / "seg")
    last = [r for r in records if "val/dice" in r][-1]
    assert {"val/dice/background", "val/dice/ball", "val/dice/box", "val/monai_dice", "val/multiclass_f1_score"} <= set(
        last
    )
    assert 0 <= last["val/dice/ball"] <= 1
    assert [r["epoch"] for r in records if "train/loss" in r] == [0, 1]  # 2 steps an epoch, logged every epoch


SLOW_ITEMS = """
import time


class Slowd:
    '''Slows each item down so that a test can stop the run in the middle of an epoch.'''

    def __call__(self, item):
        time.sleep(0.15)
        return item
"""


@pytest.mark.slow
def test_random_dictionary_transforms_in_two_workers_resume_exactly(tmp_path):
    """MONAI's random dictionary transforms (crops, flips, intensity shifts) in two DataLoader workers:
    a run stopped mid-epoch by SIGTERM and started again ends bit for bit where an uninterrupted run ends."""
    import os
    import signal
    import time

    from frame.training.checkpoint import load_checkpoint
    from tests.conftest import start_frame
    from tests.training.test_resume import _assert_equal, _records

    keys = ["image", "label"]
    job = {
        "model": {
            "name": "UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "channels": [4, 8],
            "strides": [2],
            "dropout": 0.1,
        },
        "training": {
            "epochs": 4,
            "batch_size": 2,
            "split_ratio": 0.67,
            "log_every_n_steps": 1,
            "loss": {"name": "DiceCELoss", "to_onehot_y": True, "softmax": True},
            "optimizer": {"name": "Adam", "learning_rate": 0.01},
            "dataset": {
                "name": "Datalist",
                "path": "dataset.json",
                "num_workers": 2,
                "transforms": [
                    {"name": "LoadImaged", "keys": keys},
                    {"name": "EnsureChannelFirstd", "keys": keys},
                    {"name": "Slowd"},
                    {
                        "name": "RandCropByPosNegLabeld",
                        "keys": keys,
                        "label_key": "label",
                        "spatial_size": [8, 8, 8],
                        "num_samples": 2,
                    },
                    {"name": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 0},
                    {"name": "RandShiftIntensityd", "keys": ["image"], "offsets": 10, "prob": 0.5},
                ],
            },
        },
    }
    runs = {}
    for name in ("reference", "stopped"):
        project = tmp_path / name
        make_project(project)
        (project / "src" / "Data").mkdir(parents=True)
        (project / "src" / "Data" / "transforms.py").write_text(SLOW_ITEMS)  # where a seed project's transforms live
        (project / "config").mkdir()
        (project / "config" / "seg.json").write_text(json.dumps({"name": "seg", **job}))
        runs[name] = project / "outputs" / "seg"
    assert start_frame(["run", "config/seg.json"], cwd=tmp_path / "reference").wait(timeout=600) == 0

    stopped = start_frame(["run", "config/seg.json"], cwd=tmp_path / "stopped")
    deadline = time.time() + 300
    while (
        time.time() < deadline
        and stopped.poll() is None
        and not ((runs["stopped"] / "metrics.jsonl").exists() and len(_records(runs["stopped"])) >= 3)
    ):
        time.sleep(0.05)
    os.kill(stopped.pid, signal.SIGTERM)
    output = stopped.communicate(timeout=300)[0]
    assert stopped.returncode == 75, output[-3000:]
    state = load_checkpoint(runs["stopped"] / "checkpoints" / "last.pt")["state"]
    assert 0 < state["step"] < 8, state  # 2 steps an epoch, 4 epochs: stopped before the end
    assert start_frame(["run", "config/seg.json"], cwd=tmp_path / "stopped").wait(timeout=600) == 0

    assert _records(runs["stopped"]) == _records(runs["reference"])
    expected, got = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (runs["reference"], runs["stopped"]))
    for saved in (expected, got):
        del saved["config"], saved["config_hash"]
    _assert_equal(expected, got, "last.pt")
