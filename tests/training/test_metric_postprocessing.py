"""A library metric's post-processing follows the loss (frame.training.metrics, build_evaluators), MONAI's own
`AsDiscrete` spelling is taken, and inputs that break a metric's contract stop with the shapes, never a number."""

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss
from monai.metrics import DiceMetric
from monai.transforms import AsDiscrete
from omegaconf import OmegaConf

from frame.core.errors import FrameError
from frame.training.build import build_evaluators
from frame.training.evaluators import update
from frame.training.metrics import LibraryMetric, as_evaluator


def _segmentation(seed=0, classes=3):
    """Logits `[2, C, 8, 8]` and a MONAI label map `[2, 1, 8, 8]` of floats, as LoadImaged gives it."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 8, 8, generator=generator)
    target = torch.randint(0, classes, (2, 1, 8, 8), generator=generator).float()
    return logits, target


def _reference_dice(logits, target, classes):
    """The spleen tutorial's validation: post_pred/post_label on each decollated item, then DiceMetric."""
    post_pred, post_label = AsDiscrete(argmax=True, to_onehot=classes), AsDiscrete(to_onehot=classes)
    metric = DiceMetric(include_background=True, reduction="mean")
    metric(y_pred=[post_pred(p) for p in logits], y=[post_label(t) for t in target])
    return float(metric.aggregate())


def test_a_dice_metric_by_name_follows_a_softmax_loss():
    cfg = OmegaConf.create({"evaluators": {"dice": {"_target_": "monai.metrics.DiceMetric", "reduction": "mean"}}})
    evaluators = build_evaluators(cfg, None, DiceCELoss(to_onehot_y=True, softmax=True))
    logits, target = _segmentation()
    evaluators["dice"].update(logits, target)
    assert evaluators["dice"].compute()["dice"] == pytest.approx(_reference_dice(logits, target, 3))


def test_auto_follows_a_sigmoid_loss_where_shapes_alone_would_say_softmax():
    """A 1-channel label map against 3 output channels looks like classes; a sigmoid loss says otherwise."""
    metric = as_evaluator(DiceMetric(reduction="mean"), "dice")
    metric.follow("sigmoid")
    assert metric.activation == "sigmoid"
    untouched = as_evaluator(DiceMetric(reduction="mean"), "dice")
    untouched.follow(None)  # a loss that does not say: decided on the first batch, as before
    assert untouched.activation == "auto"


def test_monai_post_transforms_are_the_metrics_post_processing():
    classes = 3
    metric = LibraryMetric(
        DiceMetric(reduction="mean"),
        post_pred=AsDiscrete(argmax=True, to_onehot=classes),
        post_label=[AsDiscrete(to_onehot=classes)],
        key="dice",
    )
    logits, target = _segmentation(1)
    metric.update(logits, target)
    assert metric.compute()["dice"] == pytest.approx(_reference_dice(logits, target, classes))
    with pytest.raises(ValueError, match="give one of them"):
        LibraryMetric(DiceMetric(), activation="softmax", post_pred=AsDiscrete(argmax=True))


@pytest.mark.parametrize(
    "metric, message",
    [
        (
            LibraryMetric(DiceMetric(), key="dice"),
            r"needs y_pred and y of one shape .* \[2, 3, 8, 8\] and \[2, 1, 8, 8\]",
        ),
        (
            LibraryMetric(DiceMetric(), post_label=AsDiscrete(to_onehot=3), key="dice"),
            r"needs binarized y_pred .* from -",
        ),
    ],
)
def test_raw_logits_in_a_counting_metric_stop_with_the_shapes(metric, message):
    """Was: DiceMetric on raw logits returned a number (the same every epoch, whatever the model did)."""
    logits, target = _segmentation(2)
    with pytest.raises(
        FrameError, match=r"evaluators.dice \(LibraryMetric\) fails on output \[2, 3, 8, 8\] float32"
    ) as error:
        update("dice", metric, logits, target, "first validation batch")
    assert __import__("re").search(message, str(error.value)), error.value
    assert "AsDiscrete(argmax=True, to_onehot=N)" in str(error.value)


def test_frames_dice_follows_a_sigmoid_loss_on_one_hot_labels():
    """One channel per label and a sigmoid loss: thresholded, not argmax (labels may overlap)."""
    cfg = OmegaConf.create({"evaluators": {"dice": {"_target_": "frame.training.evaluators.Dice"}}})
    evaluators = build_evaluators(cfg, ["a", "b"], DiceLoss(sigmoid=True))
    target = torch.zeros(1, 2, 4, 4)
    target[:, :, :2] = 1  # both labels on the same voxels: only a sigmoid reading can score 1
    evaluators["dice"].update(target * 20 - 10, target)
    assert evaluators["dice"].compute()["dice"] == pytest.approx(1.0)
