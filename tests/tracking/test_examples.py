"""Prediction examples: panels from segmentation and classification outputs, PNGs, W&B images."""

import numpy as np
import pytest
import torch
from PIL import Image

from frame.tracking.examples import Examples
from frame.tracking.offline import offline_runs
from frame.training.build import build_job
from frame.training.loop import fit
from tests.conftest import TINY
from tests.tracking.wandb_log import history, records


def test_3d_multilabel_segmentation_gives_the_middle_slice_with_label_maps():
    masks = torch.zeros(2, 3, 8, 16, 16)
    masks[:, 1, 4, 2:6, 2:6] = 1  # organ 2 on the middle slice only
    logits = torch.where(masks > 0, 5.0, -5.0)
    panels = Examples(torch.randn(2, 1, 8, 16, 16), masks, logits, ["liver", "spleen", "kidney"]).panels()
    assert len(panels) == 2 and panels[0].segmentation
    assert panels[0].image.shape == (16, 16) and 0 <= panels[0].image.min() and panels[0].image.max() <= 1
    assert set(np.unique(panels[0].truth)) == {0, 2} and (panels[0].truth == panels[0].prediction).all()
    assert panels[0].class_names == {0: "background", 1: "liver", 2: "spleen", 3: "kidney"}


def test_class_index_segmentation_and_classification():
    target = torch.randint(0, 3, (1, 1, 8, 8))
    panel = Examples(torch.randn(1, 1, 8, 8), target, torch.randn(1, 3, 8, 8), None).panels()[0]
    assert panel.truth.shape == (8, 8) and (panel.truth == target[0, 0].numpy()).all()
    logits = torch.tensor([[0.1, 3.0, 0.2]])
    panel = Examples(torch.randn(1, 16), torch.tensor([2]), logits, ["a", "b", "c"]).panels()[0]
    assert not panel.segmentation and panel.image.shape == (1, 16)
    assert panel.caption() == "true: c, predicted: b"


@pytest.mark.slow
def test_png_examples_and_wandb_images_from_a_run(compose, tmp_path):
    cfg = compose(
        [
            *TINY,
            "logger=[jsonl,examples,wandb]",
            "logger.examples.count=1",
            "logger.wandb.mode=offline",
            "logger.wandb.prediction_examples=2",
        ]
    )
    fit(build_job(cfg, tmp_path))
    pngs = sorted((tmp_path / "examples").glob("epoch-*.png"))
    assert [p.name for p in pngs] == ["epoch-0001.png", "epoch-0002.png"]
    pixels = np.asarray(Image.open(pngs[-1]).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10  # not blank
    (run,) = offline_runs(tmp_path)
    # read at once: the run file must be complete when fit returns (wandb's own run.finish() returns
    # before wandb-core has written the file's tail; WandbLogger.finish waits for it)
    assert [r.WhichOneof("record_type") for r in records(run.file)][-1] == "exit"
    rows = [row for row in history(run.file) if "val/examples/_type" in row]
    assert [row["_step"] for row in rows] == [row["_step"] for row in history(run.file) if "val/loss" in row]
    assert len(rows) == 2 and rows[0]["val/examples/count"] == 2
    assert {"ground_truth", "prediction"} <= set(rows[0]["val/examples/all_masks"][0])
