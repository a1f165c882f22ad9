"""Prediction examples: a few validation items with their predictions, as pictures.

The loop keeps the first N validation items of every epoch (the same items each
epoch, so their pictures show the model learning) and hands them to loggers as
`Examples`. `Examples.panels()` turns them into what a picture needs:

- segmentation (2D or 3D; the middle slice of a volume): the image, the true
  and the predicted label map, and the label names;
- classification: the image (a feature vector becomes a one-row strip) with
  the true and the predicted class.

`PngExamples` writes them to `<run_dir>/examples/epoch-NNNN.png` for runs
without W&B; the W&B logger sends the same panels as W&B images with masks.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from frame.core.atomic import write_file
from frame.tracking.base import MetricLogger

if TYPE_CHECKING:  # annotations only: torch is imported by the caller
    import torch


@dataclass
class Panel:
    image: np.ndarray  # (H, W) or (H, W, 3), floats in [0, 1]
    truth: np.ndarray | int  # label map (H, W) for segmentation, class index for classification
    prediction: np.ndarray | int
    class_names: dict[int, str]  # value in truth/prediction -> name

    @property
    def segmentation(self) -> bool:
        return isinstance(self.truth, np.ndarray)

    def caption(self) -> str:
        if self.segmentation:
            return ""
        return (
            f"true: {self.class_names.get(self.truth, self.truth)}, predicted: "  # pyright: ignore[reportCallIssue]
            f"{self.class_names.get(self.prediction, self.prediction)}"  # pyright: ignore[reportCallIssue]
        )


@dataclass
class Examples:
    """CPU tensors of the first N validation items: samples, targets, raw model outputs, label names."""

    samples: "torch.Tensor"
    targets: "torch.Tensor"
    predictions: "torch.Tensor"
    labels: list | None = None

    def panels(self) -> list[Panel]:
        samples = self.samples.float().numpy()
        predictions = self.predictions.float().numpy()
        targets = self.targets.numpy()
        spatial = predictions.ndim >= 4 and predictions.shape[2:] == samples.shape[2:]
        if spatial:
            return _segmentation_panels(samples, targets, predictions, self.labels)
        return _classification_panels(samples, targets, predictions, self.labels)


def _segmentation_panels(samples, targets, predictions, labels) -> list[Panel]:
    channels = predictions.shape[1]
    if targets.ndim == predictions.ndim and targets.shape[1] == channels and channels > 1:
        exclusive = np.allclose(targets.sum(1), 1.0)  # one-hot with a background channel
        truth = targets.argmax(1) if exclusive else _multilabel_map(targets, 0.5)
        if exclusive:
            prediction = predictions.argmax(1)
        else:
            threshold = 0.5 if predictions.min() >= 0 and predictions.max() <= 1 else 0.0  # probabilities or logits
            prediction = _multilabel_map(predictions, threshold)
        names = _names(labels, channels, offset=0 if exclusive else 1)
    else:  # class-index targets, (N, *S) or (N, 1, *S)
        truth = targets.reshape(targets.shape[0], *predictions.shape[2:]).astype(np.int64)
        prediction = predictions.argmax(1) if channels > 1 else (predictions[:, 0] > 0).astype(np.int64)
        names = _names(labels, max(channels, 2), offset=0)
    panels = []
    for i in range(len(samples)):
        image = _middle(samples[i, 0])
        panels.append(
            Panel(_normalise(image), _middle(truth[i]).astype(np.int64), _middle(prediction[i]).astype(np.int64), names)
        )
    return panels


def _classification_panels(samples, targets, predictions, labels) -> list[Panel]:
    names = _names(labels, predictions.shape[1] if predictions.ndim == 2 else 2, offset=0)
    panels = []
    for i in range(len(samples)):
        sample = samples[i]
        if sample.ndim == 1:  # a feature vector: a one-row strip
            image = sample[None]
        elif sample.ndim >= 3 and sample.shape[0] == 3:
            image = np.moveaxis(_middle(sample, channels=True), 0, -1)
        else:
            image = _middle(sample[0] if sample.ndim >= 3 else sample)
        target = targets[i]
        truth = int(target.argmax()) if np.ndim(target) else int(target)
        predicted = int(predictions[i].argmax()) if predictions.ndim == 2 else int(predictions[i] > 0)
        panels.append(Panel(_normalise(image), truth, predicted, names))
    return panels


def _multilabel_map(channels: np.ndarray, threshold: float) -> np.ndarray:
    """(N, C, *S) scores -> (N, *S) label map: 0 where no channel passes the threshold, else 1 + the strongest."""
    on = channels > threshold
    strongest = np.where(on, channels, -np.inf).argmax(1) + 1
    return np.where(on.any(1), strongest, 0)


def _middle(array: np.ndarray, channels: bool = False) -> np.ndarray:
    """The middle slice along the first spatial axis of a volume; 2D arrays pass through."""
    spatial = array.ndim - (1 if channels else 0)
    if spatial <= 2:
        return array
    index = array.shape[1 if channels else 0] // 2
    return array[:, index] if channels else array[index]


def _normalise(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return ((image - low) / (high - low) if high > low else np.zeros_like(image)).astype(np.float32)


def _names(labels, count: int, offset: int) -> dict[int, str]:
    names = {0: "background"} if offset else {}
    for i in range(count):
        names[i + offset] = str(labels[i]) if labels is not None and i < len(labels) else str(i)
    return names


# ---- pictures ---------------------------------------------------------------------------------

_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.float32,
)


def overlay(image: np.ndarray, label_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture of `image` with every non-zero label tinted in its palette colour."""
    rgb = np.repeat(image[..., None], 3, -1) * 255 if image.ndim == 2 else image * 255
    colours = _PALETTE[(label_map - 1) % len(_PALETTE)]
    tinted = np.where((label_map > 0)[..., None], (1 - alpha) * rgb + alpha * colours, rgb)
    return tinted.clip(0, 255).astype(np.uint8)


def render(panels: list[Panel], min_size: int = 128):
    """One PIL image: a row per example (image | truth | prediction, or the image with its classes)."""
    from PIL import Image, ImageDraw

    rows = []
    for panel in panels:
        base = overlay(panel.image, np.zeros(panel.image.shape[:2], dtype=np.int64))
        tiles = (
            [base, overlay(panel.image, panel.truth), overlay(panel.image, panel.prediction)]
            if panel.segmentation
            else [base]
        )
        scale = max(1, -(-min_size // max(1, min(base.shape[:2]))))
        if not panel.segmentation and base.shape[0] == 1:  # a feature strip: make it a visible band
            scale = max(1, -(-min_size * 4 // base.shape[1]))
        row = np.concatenate([np.kron(t, np.ones((scale, scale, 1), dtype=np.uint8)) for t in tiles], axis=1)
        if row.shape[0] < 24:
            row = np.repeat(row, -(-24 // row.shape[0]), axis=0)
        rows.append((row, panel.caption()))
    width = max(row.shape[1] for row, _ in rows)
    caption_h = 14
    height = sum(row.shape[0] + caption_h + 4 for row, _ in rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw, y = ImageDraw.Draw(canvas), 0
    header = "image | truth | prediction" if panels[0].segmentation else "image"
    for row, caption in rows:
        draw.text((2, y), caption or header, fill="black")
        canvas.paste(Image.fromarray(row), (0, y + caption_h))
        y += row.shape[0] + caption_h + 4
    return canvas


class PngExamples(MetricLogger):
    """Writes each epoch's prediction examples to `<run_dir>/<dirname>/epoch-NNNN.png` (no W&B needed).

    Args:
        count: examples per epoch.
        dirname: folder inside the run directory.
    """

    def __init__(self, count: int = 4, dirname: str = "examples"):
        self.prediction_examples = int(count)
        self.dirname = dirname
        self.dir = None

    def start(self, run_dir, config, resume_step):
        self.dir = Path(run_dir) / self.dirname

    def log_examples(self, examples, step, epoch):
        self.dir.mkdir(parents=True, exist_ok=True)
        image = render(examples.panels()[: self.prediction_examples])
        write_file(self.dir / f"epoch-{epoch:04d}.png", lambda tmp: image.save(tmp, format="PNG"))  # pyright: ignore[reportOptionalOperand]
