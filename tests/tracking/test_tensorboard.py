"""The TensorBoard logger: scalars and example images into event files; a resume purges past the checkpoint."""

from pathlib import Path

import torch

from frame.tracking.examples import Examples
from frame.tracking.tensorboard import TensorBoardLogger


def _events(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_images_and_a_resume_without_duplicates(tmp_path):
    logger = TensorBoardLogger(prediction_examples=2)
    logger.start(tmp_path, {}, None)
    for step in range(1, 7):
        logger.log_metrics({"train/loss": float(step)}, step=step, epoch=0)
    examples = Examples(torch.randn(2, 1, 8, 8, 8), torch.ones(2, 2, 8, 8, 8), torch.randn(2, 2, 8, 8, 8), ["a", "b"])
    logger.log_examples(examples, step=6, epoch=1)
    logger.finish("interrupted")

    resumed = TensorBoardLogger()
    resumed.start(tmp_path, {}, 4)  # the checkpoint was at step 4: steps 5 and 6 are logged again
    for step in range(5, 9):
        resumed.log_metrics({"train/loss": 10.0 * step}, step=step, epoch=1)
    resumed.finish("complete")

    events = _events(tmp_path)
    scalars = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert scalars == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0), (6, 60.0), (7, 70.0), (8, 80.0)]


def test_examples_are_an_image(tmp_path):
    logger = TensorBoardLogger(prediction_examples=2)
    logger.start(tmp_path, {}, None)
    examples = Examples(torch.randn(2, 1, 8, 8, 8), torch.ones(2, 2, 8, 8, 8), torch.randn(2, 2, 8, 8, 8), ["a", "b"])
    logger.log_examples(examples, step=3, epoch=1)
    logger.finish("complete")
    images = _events(tmp_path).Images("val/examples")
    assert [image.step for image in images] == [3] and images[0].width > 8
