"""The organs example: the seed's project tree, trained end to end on a tiny synthetic NIfTI set."""

import contextlib
import csv
import importlib.util
import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.best_metric import reproduce_best
from tests.conftest import REPO, metrics, run_frame

EXAMPLE = REPO / "examples" / "organs"
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


def _make_data():
    spec = importlib.util.spec_from_file_location("make_data", EXAMPLE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def organs(tmp_path):
    """A copy of the example with 6 small patients in data/train (the crop pads them)."""
    for name in ("src", "config", "main.py", "make_data.py"):
        source = EXAMPLE / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    _make_data().write(tmp_path / "data" / "train", patients=6, size=(48, 48, 16))
    return tmp_path


def test_the_synthetic_data_has_nine_disjoint_organs_in_a_ct_range(tmp_path):
    ct, masks = _make_data().patient(seed=0, index=1, size=(48, 48, 16))
    assert list(masks) == LABELS and all(m.sum() > 0 for m in masks.values())
    assert sum(m.astype(int) for m in masks.values()).max() == 1
    assert ct.min() < -900 and ct.max() > 600  # air and bone


@contextlib.contextmanager
def project_on_path(organs):
    """The copy's `src` package importable, and forgotten afterwards (each test has its own copy)."""
    sys.path.insert(0, str(organs))
    try:
        yield
    finally:
        sys.path.remove(str(organs))
        for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
            del sys.modules[name]


@pytest.mark.parametrize("fill_workers", [0, 2])
def test_preload_serves_workers_from_memory(organs, fill_workers):
    """preload=true with num_workers > 0: workers read the cache, never the files; the cache
    is the same whether the main process or loader workers filled it."""
    with project_on_path(organs):
        from src.Data.transforms import CropAroundBrainStem
        from src.Datasets.PatientDataset import PatientDataset

        from frame.data.loading import EpochSampler, JobDataset, make_loader
        from frame.data.transforms import StandardScaleTensor, Transpose

        dataset = PatientDataset(organs / "data" / "train", labels=LABELS)
        sample_tf = [Transpose(0, -1), CropAroundBrainStem(32, 32, 8), StandardScaleTensor()]
        label_tf = [Transpose(0, -1), CropAroundBrainStem(32, 32, 8)]
        plain = JobDataset(dataset, range(6), sample_tf, label_tf)
        cached = JobDataset(dataset, range(6), sample_tf, label_tf, preload=True, preload_workers=fill_workers)
        assert not any(t.is_shared() for item in cached._cache for t in item)  # no file descriptor per cached tensor
        cached.dataset = None  # any read past the cache would fail now
        sampler = EpochSampler(6, shuffle=False, batch_size=3)
        loader = make_loader(cached, sampler, 3, 2, torch.device("cpu"), seed=0)
        batches = list(loader)
        assert batches[0][0].shape == (3, 1, 32, 8, 32) and batches[0][1].shape == (3, 9, 32, 8, 32)
        expected = plain[(0, 4)]
        assert torch.equal(batches[1][0][1], expected[0]) and torch.equal(batches[1][1][1], expected[1])


def test_a_label_map_of_the_transformed_item_is_written_onto_the_ct_grid(organs, tmp_path):
    """The job's Transpose and crop keep the item's affine, so `frame predict` writes a map of the
    transposed, cropped item back onto the CT's grid: the organs written from the item's own masks
    are the files' masks inside the crop box (which reaches past the volume here), zero outside it."""
    with project_on_path(organs):
        from src.Data.transforms import CropAroundBrainStem
        from src.Datasets.PatientDataset import PatientDataset

        from frame.data.transforms import StandardScaleTensor, Transpose
        from frame.trained.predict import save_map

        sample, masks = PatientDataset(organs / "data" / "train", labels=LABELS)[2]
        for transform in (Transpose(0, -1), CropAroundBrainStem(width=48, height=48, depth=16), StandardScaleTensor()):
            sample = transform(sample)
        label_map = torch.where(masks.amax(-1) > 0, masks.argmax(-1) + 1, 0)[..., None]  # (x, y, z, 1), 0 = none
        for transform in (Transpose(0, -1), CropAroundBrainStem(width=48, height=48, depth=16)):
            label_map = transform(label_map)
        written = nib.load(save_map(label_map.to(torch.uint8), sample, "patient", tmp_path))
    ct = nib.load(organs / "data" / "train" / "patient_002" / "img.nii.gz")
    assert written.shape == ct.shape == (48, 48, 16)
    np.testing.assert_allclose(written.affine, ct.affine)
    truth = sum(
        (i + 1)
        * np.asarray(nib.load(organs / "data" / "train" / "patient_002" / "structures" / f"{label}.nii.gz").dataobj)
        for i, label in enumerate(LABELS)
    )
    x, y, z = sample.meta["brainstem_center"]
    box = np.zeros(ct.shape, bool)
    box[max(x - 24, 0) : x + 24, max(y - 24, 0) : y + 24, max(z - 8, 0) : z + 8] = True
    assert not box.all()  # part of the volume lies outside the crop
    labels = np.asarray(written.dataobj)
    np.testing.assert_array_equal(labels[box], truth[box])
    assert not labels[~box].any()


@pytest.mark.slow
def test_frame_run_trains_the_organs_job(organs):
    run_frame(["run", "config/job_01.json", "trainer.epochs=2", "name=organs_job_01"], cwd=organs, check=0, timeout=600)
    run_dir = organs / "outputs" / "organs_job_01"
    rows = (run_dir / "validation.csv").read_text().splitlines()  # the project's CSVLogger
    assert len(rows) == 3 and rows[0].startswith("epoch,step,val/loss")
    records = metrics(run_dir)
    last = [r for r in records if "val/loss" in r][-1]
    assert {f"val/dice/{label}" for label in LABELS} <= set(last)  # the project's OrganDice, per organ
    assert (run_dir / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
def test_python_main_py_trains(organs):
    job = organs / "config" / "job_01.json"
    job.write_text(job.read_text().replace('"epochs": 30', '"epochs": 2'))
    result = subprocess.run([sys.executable, "main.py"], cwd=organs, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (organs / "outputs" / "organs_job_01" / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_eval_predict_and_load_model_after_training(organs):
    """The issue's after-training path on the example: train, `frame eval` on held-out patients
    (the dataset root overridden as a user would), `frame predict` to NIfTI label maps that lie on
    each CT's grid, and `frame.load_model` in a fresh interpreter giving back best.pt's figure."""
    held_out = organs / "data" / "test"
    _make_data().write(held_out, patients=2, size=(48, 48, 16), seed=1)
    run_frame(["run", "config/job_01.json", "trainer.epochs=2", "name=organs_job_01"], cwd=organs, check=0, timeout=600)
    run = organs / "outputs" / "organs_job_01"
    shown = run_frame(
        ["eval", str(run), "--per-item", "--name", "held", "--device", "cpu", "data.dataset.root=data/test"],
        cwd=organs,
        check=0,
    ).stdout
    assert all(f"dice/{label} " in shown for label in LABELS)  # 13 figures: a row each, no name cut to "dic…"
    result = json.loads((run / "eval" / "held.json").read_text())
    assert result["items"] == 2 and {f"dice/{label}" for label in LABELS} <= set(result["metrics"])
    assert len(list(csv.DictReader(open(run / "eval" / "held.csv")))) == 2
    run_frame(
        ["predict", str(run), "--output", "predicted", "--device", "cpu", "data.dataset.root=data/test"],
        cwd=organs,
        check=0,
    )
    for index, patient in enumerate(sorted(held_out.iterdir())):
        ct = nib.load(patient / "img.nii.gz")
        labels = nib.load(organs / "predicted" / f"item-{index:04d}_pred.nii.gz")
        assert labels.shape == ct.shape  # the CT's axes, in its order, not the model's (y, z, x) crop
        np.testing.assert_allclose(labels.affine, ct.affine)
        assert np.asarray(labels.dataobj).max() <= len(LABELS)
    best = reproduce_best(run, organs, "val/dice")
    assert best["again"] == pytest.approx(best["logged"], abs=1e-5)
