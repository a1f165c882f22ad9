"""frame.training.evaluators: the built-in Dice and Accuracy, against values worked out by hand."""

import logging
import math
import re

import monai.metrics  # noqa: F401  (Dice imports it on first use: pay that at collection, not in a test)
import pytest
import torch

from frame.training.build import build_job
from frame.training.evaluators import Accuracy, Dice
from frame.training.first_batch import check_first_batches
from tests.conftest import TINY, metrics, run_frame


def _logits(mask):
    """Confident logits that give `mask` back after a sigmoid and a 0.5 threshold."""
    return torch.where(mask > 0, 6.0, -6.0)


def _masks():
    """One item, two labels on a 4x4 image: label 0 a 2x2 square, label 1 a row of 4."""
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :2, :2] = 1
    masks[0, 1, 3, :] = 1
    return masks


def test_dice_of_a_perfect_prediction_is_one_per_label_and_in_the_mean():
    dice = Dice(labels=["liver", "spleen"])
    dice.update(_logits(_masks()), _masks())
    assert dice.compute() == pytest.approx({"dice/liver": 1.0, "dice/spleen": 1.0, "dice": 1.0})


def test_dice_is_twice_the_overlap_over_the_sizes():
    truth = _masks()
    predicted = truth.clone()
    predicted[0, 0] = 0
    predicted[0, 0, 0, :4] = 1  # 4 voxels, 2 of them in the 4-voxel truth: 2*2 / (4+4)
    predicted[0, 1, 3, :2] = 0  # 2 voxels, all in the 4-voxel truth: 2*2 / (2+4)
    dice = Dice(labels=["a", "b"])
    dice.update(_logits(predicted), truth)
    scores = dice.compute()
    assert scores == pytest.approx({"dice/a": 0.5, "dice/b": 2 / 3, "dice": (0.5 + 2 / 3) / 2})


def test_dice_averages_items_over_batches_until_reset():
    truth = _masks()
    empty_guess = torch.full_like(truth, -6.0)  # predicts nothing: dice 0 for both labels
    dice = Dice(labels=["a", "b"])
    dice.update(_logits(truth), truth)
    dice.update(empty_guess, truth)
    assert dice.compute()["dice"] == pytest.approx(0.5)
    dice.reset()
    dice.update(empty_guess, truth)
    assert dice.compute()["dice"] == pytest.approx(0.0)


def test_a_label_absent_everywhere_is_nan_and_left_out_of_the_mean():
    truth = _masks()
    truth[0, 1] = 0
    dice = Dice(labels=["a", "b"])
    dice.update(_logits(truth), truth)
    scores = dice.compute()
    assert (
        math.isnan(scores["dice/b"]) and scores["dice/a"] == pytest.approx(1.0) and scores["dice"] == pytest.approx(1.0)
    )


def test_dice_thresholds_sigmoid_probabilities_at_its_threshold():
    truth = _masks()
    weak = torch.where(truth > 0, 0.5, -6.0)  # sigmoid(0.5) = 0.62
    default, strict = Dice(labels=["a", "b"]), Dice(labels=["a", "b"], threshold=0.7)
    default.update(weak, truth)
    strict.update(weak, truth)
    assert default.compute()["dice"] == pytest.approx(1.0) and strict.compute()["dice"] == pytest.approx(0.0)


def test_dice_with_a_class_index_target_takes_the_argmax():
    """A (B, 1, H, W) class-index target: softmax-style, background included. The logits are all
    negative, so a sigmoid threshold would predict nothing; the argmax is right everywhere."""
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    target[0, 0, :2] = 1
    target[0, 0, 3, 3] = 2
    logits = torch.full((1, 3, 4, 4), -9.0).scatter(1, target, -1.0)
    for dice in (Dice(labels=["background", "organ", "tumour"]), Dice(activation="softmax")):
        dice.update(logits, target)
        scores = dice.compute()
        assert scores["dice"] == pytest.approx(1.0) and len(scores) == 4
    sigmoid = Dice(activation="sigmoid")
    sigmoid.update(logits, torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float())
    assert sigmoid.compute()["dice"] == pytest.approx(0.0)


def test_dice_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        Dice(activation="relu")


def test_accuracy_counts_argmax_hits_over_every_batch_until_reset():
    accuracy = Accuracy()
    assert accuracy.compute() == {}  # nothing seen yet
    logits = torch.tensor([[2.0, 0.1, 0.0], [0.0, 3.0, 0.2], [0.1, 0.0, 1.0], [5.0, 0.0, 0.0]])
    accuracy.update(logits, torch.tensor([0, 1, 2, 2]))  # 3 of 4
    assert accuracy.compute() == pytest.approx({"accuracy": 0.75})
    accuracy.update(logits[:2], torch.tensor([1, 1]))  # 1 of 2 more: 4 of 6, micro (by item), not by batch
    assert accuracy.compute() == pytest.approx({"accuracy": 4 / 6})
    accuracy.reset()
    accuracy.update(logits[:1], torch.tensor([0]))
    assert accuracy.compute() == pytest.approx({"accuracy": 1.0})


def test_accuracy_equals_torchmetrics_micro_accuracy_on_scores_indices_and_label_maps():
    """frame counts top-1 hits itself (torchmetrics' import is seconds of every run's start-up): the same
    numbers as MulticlassAccuracy(average="micro") over several batches, for classifier logits, probabilities,
    class-index predictions and segmentation label maps ([B, H, W] and [B, 1, H, W] float, as LoadImaged gives)."""
    from torchmetrics.classification import MulticlassAccuracy

    generator = torch.Generator().manual_seed(0)

    def scores(*shape):
        return torch.randn(*shape, generator=generator)

    def classes(high, *shape):
        return torch.randint(0, high, shape, generator=generator)

    cases = {
        "logits and probabilities": [(scores(8, 5), classes(5, 8)), (scores(3, 5).softmax(1), classes(5, 3))],
        "label maps": [(scores(2, 3, 6, 6), classes(3, 2, 6, 6)), (scores(1, 3, 6, 6), classes(3, 1, 6, 6))],
        "channel of one": [(scores(2, 3, 6, 6), classes(3, 2, 1, 6, 6).float())],
    }
    for name, batches in cases.items():
        frame, reference = Accuracy(), MulticlassAccuracy(num_classes=batches[0][0].shape[1], average="micro")
        for prediction, target in batches:
            frame.update(prediction, target)
            reference.update(prediction, target[:, 0].long() if target.ndim == prediction.ndim else target)
        assert frame.compute()["accuracy"] == pytest.approx(float(reference.compute()), abs=1e-7), name
    indices = Accuracy()
    indices.update(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 1]))
    assert indices.compute() == pytest.approx({"accuracy": 2 / 3})


@pytest.mark.parametrize(
    "prediction,target,says",
    [
        (torch.randn(4, 3), torch.tensor([0, 1, 3, 2]), "classes 0..3, outside the output's 0..2"),
        (torch.randn(4, 3), torch.tensor([0, -1, 1, 2]), "classes -1..2, outside the output's 0..2"),
        (torch.tensor([0, 1]), torch.tensor([0, -1]), "classes -1..0, outside 0 and above"),
        (torch.randn(4, 3), torch.randn(4, 3).softmax(1), "class indices as the target"),
        (torch.randn(4, 3), torch.tensor([0, 1]), "scores [B, C, ...]"),
    ],
)
def test_accuracy_refuses_what_is_not_class_indices_in_range(prediction, target, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        Accuracy().update(prediction, target)


def _one_hot(indices, channels):
    return torch.nn.functional.one_hot(indices, channels).movedim(-1, 1).float()


def test_dice_on_a_label_map_scores_the_argmax():
    """Softmax output against a `[B, H, W]` class-index map (as `DiceCELoss(to_onehot_y=True,
    softmax=True)` trains): `auto` takes the argmax, as MONAI's DiceMetric on one-hot argmax does."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    target = torch.randint(0, 3, (2, 8, 8), generator=generator)
    dice = Dice(labels=["background", "ball", "box"])
    dice.update(logits, target)
    scores = dice.compute()
    assert dice.activation == "softmax"
    reference = monai.metrics.DiceMetric(include_background=True, reduction="mean_batch")
    reference(y_pred=_one_hot(logits.argmax(1), 3), y=_one_hot(target, 3))
    expected = reference.aggregate()
    assert [scores[f"dice/{label}"] for label in ("background", "ball", "box")] == pytest.approx(expected.tolist())
    hits = (logits.argmax(1) == 1) & (target == 1)  # label 1 by hand, both items pooled per item then averaged
    by_item = [2 * hits[i].sum() / ((logits[i].argmax(0) == 1).sum() + (target[i] == 1).sum()) for i in range(2)]
    assert scores["dice/ball"] == pytest.approx(float(sum(by_item)) / 2)
    sigmoid = Dice(activation="sigmoid")  # what a per-channel threshold would have said: another figure
    sigmoid.update(logits, _one_hot(target, 3))
    assert abs(sigmoid.compute()["dice"] - scores["dice"]) > 0.05


def test_dice_with_one_channel_per_label_thresholds_sigmoid_per_channel():
    """Overlapping labels, one channel each: `auto` thresholds each channel's sigmoid, so a voxel in
    both labels counts for both (an argmax would give it to one and halve the other's Dice)."""
    truth = torch.zeros(1, 2, 4, 4)
    truth[0, 0, :2] = 1  # rows 0-1
    truth[0, 1, 1:3] = 1  # rows 1-2: row 1 in both
    logits = torch.where(truth > 0, 2.0, -2.0)
    logits[0, 1, 1] = 1.0  # lower than label 0's there: an argmax would take row 1 from label 1
    dice = Dice(labels=["a", "b"])
    dice.update(logits, truth)
    assert dice.activation == "sigmoid"
    assert dice.compute() == pytest.approx({"dice/a": 1.0, "dice/b": 1.0, "dice": 1.0})
    argmax = monai.metrics.DiceMetric(reduction="mean_batch")  # the argmax reading: b keeps row 2 only
    argmax(y_pred=_one_hot(logits.argmax(1), 2), y=truth)
    assert argmax.aggregate()[1] == pytest.approx(2 * 4 / (4 + 8))


def test_a_dice_that_contradicts_the_loss_is_warned_about(compose, tmp_path, caplog):
    """DiceCELoss(softmax=True) trains one reading of the output, Dice(activation=sigmoid) scores
    another: frame says so before the first epoch, naming both."""
    cfg = compose(
        [*TINY, "loss._target_=monai.losses.DiceCELoss", "+loss.softmax=true", "+evaluators.dice.activation=sigmoid"]
    )
    job = build_job(cfg, tmp_path)
    with caplog.at_level(logging.WARNING, logger="frame"):
        check_first_batches(job, torch.autocast("cpu", enabled=False), "val/dice")
    warned = [r.getMessage() for r in caplog.records if "evaluators.dice" in r.getMessage()]
    assert len(warned) == 1 and "sigmoid" in warned[0] and "DiceCELoss" in warned[0] and "softmax" in warned[0]
    caplog.clear()
    agreeing = build_job(compose([*TINY, "+evaluators.dice.activation=sigmoid"]), tmp_path / "agreeing")  # DiceBCELoss
    with caplog.at_level(logging.WARNING, logger="frame"):
        check_first_batches(agreeing, torch.autocast("cpu", enabled=False), "val/dice")
    assert not [r for r in caplog.records if "evaluators.dice" in r.getMessage()]


@pytest.mark.slow
def test_library_metrics_by_name_from_yaml_are_logged(tmp_path):
    """torchmetrics' MulticlassF1Score as it is and MONAI's ROCAUCMetric inside LibraryMetric (the
    two ways of docs/reference/config.md), from command-line YAML on the classification experiment."""
    run_frame(
        [
            "train",
            "experiment=classify",
            "data.dataset.num_samples=64",
            "data.batch_size=16",
            "trainer.epochs=2",
            "name=bynames",
            "+evaluators.f1={_target_: torchmetrics.classification.MulticlassF1Score, num_classes: 4}",
            "+evaluators.auc={_target_: frame.training.metrics.LibraryMetric, metric: {_target_: monai.metrics.ROCAUCMetric}, "
            "activation: softmax}",
        ],
        cwd=tmp_path,
        check=0,
    )
    validated = [r for r in metrics(next((tmp_path / "outputs").rglob("metrics.jsonl")).parent) if "val/f1" in r]
    assert len(validated) == 2  # one validation an epoch
    for record in validated:
        assert 0 <= record["val/f1"] <= 1 and 0 <= record["val/auc"] <= 1 and 0 <= record["val/accuracy"] <= 1


def test_a_ranking_metric_gets_probabilities_not_argmax_decisions():
    """ROC AUC of the softmax scores, as MONAI's recipe computes it; argmax one-hot would lose the ranking."""
    from monai.metrics import ROCAUCMetric

    from frame.training.metrics import LibraryMetric

    logits = torch.tensor([[0.0, -2.2], [0.0, -0.4], [0.0, -0.85], [0.0, 2.2]])  # p(1) = 0.1, 0.4, 0.3, 0.9
    target = torch.tensor([0, 1, 0, 1])  # ranked perfectly, but argmax calls the second item 0
    auc = LibraryMetric(ROCAUCMetric(), activation="softmax", key="auc")
    auc.update(logits, target)
    expected = ROCAUCMetric()
    expected(y_pred=logits.softmax(dim=1), y=torch.nn.functional.one_hot(target, 2).float())
    assert auc.compute()["auc"] == pytest.approx(float(expected.aggregate())) == pytest.approx(1.0)
    decided = LibraryMetric(ROCAUCMetric(), activation="softmax", key="auc", discrete=True)
    decided.update(logits, target)
    assert decided.compute()["auc"] != pytest.approx(auc.compute()["auc"])  # the lower number it used to give


@pytest.mark.parametrize("activation", [None, "softmax"])
def test_torchmetrics_take_a_monai_label_map_as_it_comes_from_loadimaged(activation):
    """MONAI's segmentation target is `[B, 1, ...]` floats; torchmetrics wants `[B, ...]` class indices.
    F1 (raw logits: torchmetrics' own argmax) and AUROC (softmax scores) score it as they score the indices."""
    from torchmetrics.classification import MulticlassAUROC, MulticlassF1Score

    from frame.training.metrics import LibraryMetric

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, generator=generator)
    indices = torch.randint(0, 3, (2, 5, 6), generator=generator)
    label_map = indices[:, None].float()  # what LoadImaged + EnsureChannelFirstd give
    metric = MulticlassF1Score(num_classes=3) if activation is None else MulticlassAUROC(num_classes=3)
    expected = metric.clone()
    expected.update(logits if activation is None else logits.softmax(dim=1), indices)
    wrapped = LibraryMetric(metric, activation=activation, key="m")
    wrapped.update(logits, label_map)
    assert wrapped.compute()["m"] == pytest.approx(float(expected.compute()))
