"""TensorBoard event files beside W&B: `logger=[jsonl,console,tensorboard]`, offline by nature.

Scalars go to `<run_dir>/tensorboard/` with `torch.utils.tensorboard`; prediction examples as one
picture per validation (the same rendering as the PNG logger). A resumed run writes with
`purge_step` just past the checkpoint's step, so TensorBoard drops the events the first attempt
logged after it and the curves continue without duplicates (as metrics.jsonl is cut back).
"""

from pathlib import Path

import numpy as np

from frame.compat.extras import pip_extra
from frame.core.errors import FrameError
from frame.tracking.base import MetricLogger
from frame.tracking.examples import render


class TensorBoardLogger(MetricLogger):
    """Args:
    dirname: folder inside the run directory (`tensorboard --logdir outputs` finds every run).
    prediction_examples: validation examples per epoch, as an image (0 = none).
    """

    def __init__(self, dirname: str = "tensorboard", prediction_examples: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (fails without the tensorboard package)
        except ImportError as error:
            raise FrameError(
                f"logger tensorboard needs the tensorboard package: {pip_extra('tensorboard')} "
                "(or tensorboard), or leave tensorboard out of logger=[...]."
            ) from error
        self.dirname = dirname
        self.prediction_examples = int(prediction_examples)
        self.writer = None

    def start(self, run_dir, config, resume_step):
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None  # events past the checkpoint are dropped
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / self.dirname), purge_step=purge)

    def log_metrics(self, metrics, step, epoch):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def log_examples(self, examples, step, epoch):
        picture = np.asarray(render(examples.panels()[: self.prediction_examples]))
        self.writer.add_image("val/examples", picture, global_step=step, dataformats="HWC")

    def finish(self, status):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
