"""The organs example: the seed's project tree, trained end to end on a tiny synthetic NIfTI set."""

import importlib.util
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, metrics, run_frame

EXAMPLE = REPO / "examples" / "organs"
LABELS = ["BrainStem", "Chiasm", "Mandible", "OpticNerve_L", "OpticNerve_R", "Parotid_L", "Parotid_R",
          "Submandibular_L", "Submandibular_R"]


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


@pytest.mark.parametrize("fill_workers", [0, 2])
def test_preload_serves_workers_from_memory(organs, fill_workers):
    """preload=true with num_workers > 0: workers read the cache, never the files; the cache
    is the same whether the main process or loader workers filled it."""
    sys.path.insert(0, str(organs))
    try:
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
    finally:
        sys.path.remove(str(organs))
        for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
            del sys.modules[name]


@pytest.mark.slow
def test_frame_run_trains_the_organs_job(organs):
    run_frame(["run", "config/job_01.json", "trainer.epochs=2"], cwd=organs, check=0, timeout=600)
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
    job.write_text(job.read_text().replace('"epochs": 12', '"epochs": 2'))
    result = subprocess.run([sys.executable, "main.py"], cwd=organs, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (organs / "outputs" / "organs_job_01" / "checkpoints" / "last.pt").is_file()
