"""frame.data.loading: the split, EpochSampler, per-item seeded transforms, the preload cache."""

import random

import numpy as np
import pytest
import torch
from monai.transforms import Randomizable  # also what makes `is_random` see a project's own random transform
from torch.utils.data import Dataset

from frame.core.errors import FrameError
from frame.data.loading import EpochSampler, JobDataset, is_random, item_seed, make_loader, split_indices


class Items(Dataset):
    """Item i is (a 3-vector of i, i); counts its reads."""

    def __init__(self, n):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        self.reads += 1
        return torch.full((3,), float(index)), index


class Scale:
    """A deterministic transform."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return x * self.factor


class Noise(Randomizable):
    """A random transform in MONAI's style: draws from its own `self.R`."""

    def randomize(self, data=None):
        self._shift = self.R.uniform(-1, 1, 3)

    def __call__(self, x):
        self.randomize()
        return x + torch.as_tensor(self._shift, dtype=x.dtype)


class TorchNoise(Randomizable):
    """A random transform that draws from torch's global RNG (as many user transforms do)."""

    def randomize(self, data=None):
        pass

    def __call__(self, x):
        return x + torch.rand(3)


def _order(sampler, epoch, start_batch=0):
    sampler.set_epoch(epoch, start_batch=start_batch)
    return [index for _, index in sampler]


# ---- split ------------------------------------------------------------------------------------


def test_split_is_a_seeded_partition():
    train, val = split_indices(20, 0.8, seed=3)
    assert len(train) == 16 and len(val) == 4
    assert sorted(train + val) == list(range(20)) and train == sorted(train) and val == sorted(val)
    assert (train, val) == split_indices(20, 0.8, seed=3)
    assert val != split_indices(20, 0.8, seed=4)[1]


@pytest.mark.parametrize("ratio", [0.0, 0.01, 1.0])
def test_split_that_leaves_one_side_empty_is_an_error(ratio):
    with pytest.raises(FrameError, match="split_ratio"):
        split_indices(10, ratio, seed=0)


# ---- EpochSampler -----------------------------------------------------------------------------


def test_sampler_order_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(50, shuffle=True, seed=7), EpochSampler(50, shuffle=True, seed=7)
    first = _order(a, 0)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert _order(b, 0) == first  # another sampler (another process, another attempt): the same order
    assert _order(a, 1) != first  # a new epoch reshuffles
    assert _order(a, 0) == first  # and going back to an epoch gives its order again
    assert _order(EpochSampler(50, shuffle=True, seed=8), 0) != first


def test_sampler_yields_its_epoch_with_each_index():
    sampler = EpochSampler(5, shuffle=True, seed=0)
    sampler.set_epoch(3)
    assert {epoch for epoch, _ in sampler} == {3}


def test_unshuffled_sampler_keeps_the_dataset_order():
    sampler = EpochSampler(7, shuffle=False, seed=5)
    assert _order(sampler, 0) == _order(sampler, 4) == list(range(7))


@pytest.mark.parametrize("start_batch", [1, 3, 5])
def test_resuming_mid_epoch_yields_the_remaining_indices(start_batch):
    sampler = EpochSampler(23, shuffle=True, seed=1, batch_size=4)
    full = _order(sampler, 2)
    rest = _order(sampler, 2, start_batch=start_batch)
    assert rest == full[start_batch * 4 :]
    assert len(sampler) == len(rest)


@pytest.mark.parametrize("world_size", [1, 2])
def test_a_batch_limit_takes_the_head_of_each_epochs_order(world_size):
    """trainer.limit_train_batches: each rank's first `limit` batches of the full order, also when
    resumed inside them, and a fresh head each epoch."""
    full = [
        EpochSampler(40, shuffle=True, seed=3, batch_size=4, rank=r, world_size=world_size) for r in range(world_size)
    ]
    limited = [
        EpochSampler(40, shuffle=True, seed=3, batch_size=4, rank=r, world_size=world_size, limit_batches=2)
        for r in range(world_size)
    ]
    for whole, head in zip(full, limited):
        assert _order(head, 1) == _order(whole, 1)[:8] and len(head) == 8
        assert _order(head, 1, start_batch=1) == _order(whole, 1)[4:8]
        assert len(head) == 4  # after the resume above
        assert _order(head, 2) != _order(head, 1)
    assert EpochSampler(6, shuffle=False, batch_size=4, limit_batches=5).__len__() == 6  # more than there is


def test_resuming_past_the_end_yields_nothing():
    sampler = EpochSampler(8, shuffle=True, seed=1, batch_size=4)
    assert _order(sampler, 0, start_batch=2) == [] and len(sampler) == 0


def test_ddp_shards_are_disjoint_and_cover_the_epoch():
    shards = [_order(EpochSampler(24, shuffle=True, seed=2, rank=r, world_size=4), 5) for r in range(4)]
    assert all(len(s) == 6 for s in shards)
    assert sorted(i for s in shards for i in s) == list(range(24))  # every item once
    assert shards != [_order(EpochSampler(24, shuffle=True, seed=2, rank=r, world_size=4), 6) for r in range(4)]


def test_uneven_ddp_shards_pad_by_wrapping_around():
    """10 items on 4 ranks: 3 each, like DistributedSampler; only the 2 padding items appear twice."""
    samplers = [EpochSampler(10, shuffle=True, seed=2, rank=r, world_size=4) for r in range(4)]
    shards = [_order(s, 0) for s in samplers]
    assert [len(s) for s in shards] == [len(s) for s in samplers] == [3, 3, 3, 3]
    seen = [i for s in shards for i in s]
    assert set(seen) == set(range(10))
    order = _order(EpochSampler(10, shuffle=True, seed=2), 0)
    assert sorted(i for i in set(seen) if seen.count(i) > 1) == sorted(order[:2])


def test_ddp_shards_resume_mid_epoch_on_every_rank():
    for rank in range(3):
        sampler = EpochSampler(30, shuffle=True, seed=4, batch_size=2, rank=rank, world_size=3)
        assert _order(sampler, 1, start_batch=2) == _order(sampler, 1)[4:]


# ---- per-item random transforms ----------------------------------------------------------------


def test_is_random_knows_monai_randomizable_and_nothing_else():
    assert is_random(Noise()) and is_random(TorchNoise())
    assert not is_random(Scale(2)) and not is_random(lambda x: x)


def test_an_item_gets_the_same_random_transform_for_the_same_epoch_whatever_the_order():
    data = JobDataset(Items(6), range(6), [Scale(2), Noise(), TorchNoise()], seed=11)
    forward = [data[(1, i)] for i in range(6)]
    backward = [data[(1, i)] for i in reversed(range(6))][::-1]
    for (a, label_a), (b, label_b) in zip(forward, backward):
        assert torch.equal(a, b) and label_a == label_b
    again = JobDataset(Items(6), range(6), [Scale(2), Noise(), TorchNoise()], seed=11)  # a fresh process
    assert torch.equal(again[(1, 4)][0], forward[4][0])


class Jitter:
    """A project's random transform that does not say so (not Randomizable, no Rand* name)."""

    def __call__(self, x):
        return x + torch.randn_like(x) + float(np.random.normal()) + random.random()


def test_a_random_transform_that_does_not_say_so_is_still_seeded_per_item_without_preload():
    data = JobDataset(Items(4), range(4), [Jitter()], seed=11)
    first = data[(1, 2)][0]
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # whatever the global (worker) state is
    assert torch.equal(data[(1, 2)][0], first)
    assert torch.equal(JobDataset(Items(4), range(4), [Jitter()], seed=11)[(1, 2)][0], first)
    assert not torch.equal(data[(2, 2)][0], first)


def test_random_transforms_vary_by_epoch_item_seed_and_stream():
    data = JobDataset(Items(4), range(4), [Noise()], seed=11)
    base = data[(0, 2)][0]
    noise = base - 2.0
    assert not torch.equal(data[(1, 2)][0], base)  # another epoch
    assert not torch.allclose(data[(0, 3)][0] - 3.0, noise)  # another item: another draw, not a shared one
    assert not torch.equal(JobDataset(Items(4), range(4), [Noise()], seed=12)[(0, 2)][0], base)
    validation = JobDataset(Items(4), range(4), [Noise()], seed=11, salt=1)  # the validation stream
    assert not torch.equal(validation[(0, 2)][0], base)


def test_label_transforms_apply_to_the_label_only():
    data = JobDataset(Items(3), range(3), sample_transforms=[Scale(10)], label_transforms=[lambda y: y + 100])
    sample, label = data[(0, 2)]
    assert torch.equal(sample, torch.full((3,), 20.0)) and label == 102


def test_seeding_a_batch_leaves_python_and_torch_as_they_were_and_numpy_at_the_last_items_seed():
    data = JobDataset(Items(3), range(3), [Noise(), TorchNoise()], seed=0)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = random.random(), torch.rand(1)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    data.__getitems__([(0, 2), (0, 1)])
    assert random.random() == expected[0] and torch.equal(torch.rand(1), expected[1])
    after = np.random.rand()  # numpy is not put back (costly to save, read by nothing in the loop) ...
    np.random.seed(item_seed(0, 0, 0, 1))
    assert after == np.random.rand()  # ... but left at the last item's seed: a function of the item, not of history


def test_item_seeds_are_32_bit_and_distinct_for_every_seed_stream_epoch_and_item():
    seeds = {
        item_seed(seed, salt, epoch, position)
        for seed in range(3)
        for salt in (0, 1)
        for epoch in range(20)
        for position in range(200)
    }
    assert len(seeds) == 3 * 2 * 20 * 200 and all(0 <= s < 2**32 for s in seeds)
    assert item_seed(7, 0, 3, 11) == item_seed(7, 0, 3, 11)


def test_a_monai_transform_draws_as_if_seeded_by_monai_itself_and_the_class_generator_is_untouched():
    from monai.transforms import RandGaussianNoise

    class_state = Randomizable.R.get_state()[1].copy()
    data = JobDataset(Items(4), range(4), [RandGaussianNoise(prob=1.0)], seed=3)
    item = data[(2, 1)][0]
    reference = RandGaussianNoise(prob=1.0).set_random_state(seed=item_seed(3, 0, 2, 1))  # MONAI's own seeding
    assert torch.equal(torch.as_tensor(item), torch.as_tensor(reference(torch.full((3,), 1.0))))
    assert np.array_equal(Randomizable.R.get_state()[1], class_state)


def _epoch(loader, sampler, epoch):
    sampler.set_epoch(epoch)
    return [(s.clone(), t.clone()) for s, t in loader]


def test_batches_do_not_depend_on_the_number_of_workers():
    """Workers draw items in any order and each has its own RNG state: the per-item seed makes that invisible."""
    results = []
    for workers in (0, 2):
        data = JobDataset(Items(10), range(10), [Scale(3), Noise(), TorchNoise()], seed=21)
        sampler = EpochSampler(10, shuffle=True, seed=21, batch_size=4)
        loader = make_loader(data, sampler, 4, workers, torch.device("cpu"), seed=21)
        results.append([_epoch(loader, sampler, e) for e in (0, 1)])
        del loader
    single, multi = results
    assert [len(epoch) for epoch in single] == [3, 3]
    for epoch_single, epoch_multi in zip(single, multi):
        for (s0, t0), (s1, t1) in zip(epoch_single, epoch_multi):
            assert torch.equal(s0, s1) and torch.equal(t0, t1)
    assert not torch.equal(single[0][0][0], single[1][0][0])  # the epochs differ


# ---- preload ----------------------------------------------------------------------------------


def test_preload_caches_the_leading_deterministic_transforms_only():
    source = Items(5)
    data = JobDataset(
        source, [4, 0, 2], [Scale(2), Noise(), Scale(10)], label_transforms=[lambda y: -y], seed=3, preload=True
    )
    assert source.reads == 3  # each item read once, at construction
    assert [(s.tolist(), y) for s, y in data._cache] == [([8.0] * 3, -4), ([0.0] * 3, 0), ([4.0] * 3, -2)]
    data[(0, 0)], data[(1, 2)]
    assert source.reads == 3  # later reads come from memory


def test_preload_gives_the_same_items_as_reading_and_random_transforms_still_vary():
    transforms = [Scale(2), Noise(), Scale(10)]
    plain = JobDataset(Items(5), range(5), transforms, seed=3)
    cached = JobDataset(Items(5), range(5), transforms, seed=3, preload=True)
    for epoch in (0, 1):
        for position in range(5):
            assert torch.equal(cached[(epoch, position)][0], plain[(epoch, position)][0])
    assert not torch.equal(cached[(0, 1)][0], cached[(1, 1)][0])  # the cache holds no random result


def test_preload_without_random_transforms_serves_the_transformed_items():
    data = JobDataset(Items(4), range(4), [Scale(5)], seed=0, preload=True)
    assert torch.equal(data[(0, 3)][0], torch.full((3,), 15.0)) and torch.equal(data[(7, 3)][0], data[(0, 3)][0])


def test_preload_filled_by_workers_equals_the_main_process_fill():
    main = JobDataset(Items(6), range(6), [Scale(2), Noise()], seed=1, preload=True)
    workers = JobDataset(Items(6), range(6), [Scale(2), Noise()], seed=1, preload=True, preload_workers=2)
    assert len(workers._cache) == 6
    for (a, la), (b, lb) in zip(main._cache, workers._cache):
        assert torch.equal(a, b) and la == lb and not b.is_shared()


def test_preload_fills_on_one_torch_thread_as_a_worker_would_and_puts_the_count_back():
    seen = []

    def record_threads(x):
        seen.append(torch.get_num_threads())
        return x

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what a 2-core machine starts with (the suite runs on one thread a process)
    try:
        JobDataset(Items(3), range(3), [record_threads], seed=0, preload=True)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_torchvision_random_transforms_without_random_in_their_name_are_random():
    """ColorJitter or RandAugment cached by preload (or applied to validation) would be one draw for ever."""
    from torchvision.transforms import v2

    assert is_random(v2.ColorJitter(brightness=0.5)) and is_random(v2.RandAugment()) and is_random(v2.GaussianBlur(3))
    assert is_random(v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip()]))
    assert not is_random(v2.Compose([v2.ToImage(), v2.Resize(8)])) and not is_random(v2.Normalize([0.5], [0.5]))
