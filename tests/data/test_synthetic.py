"""frame.data.synthetic: data sets whose items are pure functions of (seed, index)."""

import pytest
import torch

from frame.data.synthetic import SyntheticClasses, SyntheticOrgans

SIZE = (8, 10, 12)


def test_organ_items_are_a_pure_function_of_seed_and_index():
    data = SyntheticOrgans(num_samples=4, size=SIZE, seed=3)
    volume, masks = data[2]
    again = SyntheticOrgans(num_samples=4, size=SIZE, seed=3)[2]  # another instance: another worker, another run
    assert torch.equal(volume, again[0]) and torch.equal(masks, again[1])
    assert torch.equal(data[2][0], volume)  # reading it twice gives it twice
    assert not torch.equal(data[1][0], volume)
    assert not torch.equal(SyntheticOrgans(num_samples=4, size=SIZE, seed=4)[2][0], volume)


def test_organ_items_have_one_binary_mask_channel_per_label():
    data = SyntheticOrgans(num_samples=3, size=SIZE)
    assert len(data) == 3 and data.labels == ["liver", "spleen", "kidney_l", "kidney_r", "pancreas", "bladder"]
    volume, masks = data[0]
    assert volume.shape == (1, *SIZE) and masks.shape == (6, *SIZE)
    assert volume.dtype == masks.dtype == torch.float32
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert (masks.flatten(1).sum(1) > 0).all()  # every organ is visible


def test_choosing_labels_picks_and_orders_the_mask_channels():
    every = SyntheticOrgans(num_samples=2, size=SIZE, seed=1)
    some = SyntheticOrgans(labels=["spleen", "liver"], num_samples=2, size=SIZE, seed=1)
    volume, masks = some[1]
    assert torch.equal(volume, every[1][0])  # the image does not depend on which labels are asked for
    assert torch.equal(masks, every[1][1][[1, 0]])


def test_an_unknown_organ_is_an_error_that_lists_the_known_ones():
    with pytest.raises(ValueError, match="no organ \\['heart'\\].*liver"):
        SyntheticOrgans(labels=["liver", "heart"])


def test_organ_volumes_look_like_ct():
    volume, masks = SyntheticOrgans(num_samples=1, size=(16, 16, 16), noise_hu=0.0)[0]
    assert volume[0, 0, 0, 0] == -1000.0  # air outside the body
    liver = volume[0][masks[0] > 0]
    assert 30 < liver.median() < 90  # the liver's intensity (60 HU, with a per-item offset)


def test_classes_are_seeded_and_named():
    data = SyntheticClasses(num_samples=40, num_features=5, num_classes=3, seed=2)
    features, target = data[7]
    assert len(data) == 40 and features.shape == (5,) and 0 <= int(target) < 3
    assert data.labels == ["class_0", "class_1", "class_2"]
    again = SyntheticClasses(num_samples=40, num_features=5, num_classes=3, seed=2)
    assert torch.equal(again.features, data.features) and torch.equal(again.targets, data.targets)
    assert not torch.equal(
        SyntheticClasses(num_samples=40, num_features=5, num_classes=3, seed=3).features, data.features
    )


def test_classes_are_clusters_that_a_nearest_mean_rule_separates():
    data = SyntheticClasses(num_samples=400, num_features=8, num_classes=4, spread=0.1, seed=0)
    means = torch.stack([data.features[data.targets == c].mean(0) for c in range(4)])
    predicted = torch.cdist(data.features, means).argmin(1)
    assert (predicted == data.targets).float().mean() > 0.95
    assert set(data.targets.tolist()) == {0, 1, 2, 3}
