"""From a dataset to the loaders the loop iterates.

Three things make runs repeatable and resumable here:
- the split is a seeded permutation, so the same job always validates on the same items;
- `EpochSampler` draws each epoch's order from (seed, epoch) alone and can start
  mid-epoch, so a resumed run replays exactly the batches it had left;
- every item is transformed under RNGs seeded from (seed, epoch, index), so random
  transforms give the same result whichever worker, or which attempt, loads the item.
"""

import atexit
import math
import random
import weakref
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from frame.errors import FrameError
from frame.signals import ignore_stop_signals


def split_indices(length: int, split_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded permutation cut into (train, validation) indices."""
    order = torch.randperm(length, generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = int(math.floor(length * split_ratio))
    if n_train == 0 or n_train == length:
        raise FrameError(
            f"data.split_ratio={split_ratio} leaves {n_train} of {length} items for training "
            f"and {length - n_train} for validation; both need at least one."
        )
    return sorted(order[:n_train]), sorted(order[n_train:])


def is_random(transform) -> bool:
    """True for transforms whose output is random (MONAI's Randomizable, torchvision's Random*)."""
    if hasattr(transform, "set_random_state"):
        return True
    name = type(transform).__name__
    return name.startswith("Random") or name.startswith("Rand")


class JobDataset(Dataset):
    """A subset of a dataset with the job's sample and label transforms applied.

    Items are addressed as `(epoch, index)` (what `EpochSampler` yields) so that
    random transforms can be seeded per item and per epoch.

    Args:
        dataset: the user's dataset; items are `(sample, label)`.
        indices: which of its items this subset holds.
        sample_transforms / label_transforms: callables applied in order.
        seed: job seed; `salt` separates the training and validation streams.
        preload: keep each item in memory after its leading deterministic transforms.
        preload_workers: loader processes that read the items into memory (the epoch's
            `num_workers`, so filling the cache costs about one epoch without it).
    """

    def __init__(self, dataset, indices, sample_transforms=(), label_transforms=(), seed=0, salt=0, preload=False,
                 preload_workers=0):
        self.dataset = dataset
        self.indices = list(indices)
        self.seed, self.salt = seed, salt
        # split once, not per item: the leading deterministic transforms (what preload caches), then the rest
        sample_split = _leading_deterministic(sample_transforms)
        label_split = _leading_deterministic(label_transforms)
        self._fixed_sample, self._random_sample = list(sample_transforms[:sample_split]), list(sample_transforms[sample_split:])
        self._fixed_label, self._random_label = list(label_transforms[:label_split]), list(label_transforms[label_split:])
        self._random = self._random_sample + self._random_label
        self._cache = self._fill(preload_workers) if preload else None

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        epoch, position = key if isinstance(key, tuple) else (0, key)
        if self._cache is not None:
            sample, label = self._cache[position]
        else:
            sample, label = self._deterministic_item(position)
        if not self._random:
            return sample, label
        with _seeded_rngs(self.seed, self.salt, epoch, position, self._random):
            return _apply(self._random_sample, sample), _apply(self._random_label, label)

    def _fill(self, workers: int) -> list:
        if workers == 0:
            return [self._deterministic_item(i) for i in range(len(self.indices))]
        loader = DataLoader(_Deterministic(self), batch_size=None, num_workers=workers, collate_fn=_as_is,
                            worker_init_fn=_seed_worker)
        return [_own_copy(item) for item in loader]

    def _deterministic_item(self, position):
        sample, label = self.dataset[self.indices[position]]
        return _apply(self._fixed_sample, sample), _apply(self._fixed_label, label)


class _Deterministic(Dataset):
    """A JobDataset's items before their random transforms: what preload reads in loader workers."""

    def __init__(self, owner: JobDataset):
        self.owner = owner

    def __len__(self):
        return len(self.owner)

    def __getitem__(self, position):
        return self.owner._deterministic_item(position)


def _as_is(item):
    return item


def _own_copy(item):
    """Tensors from a worker arrive in shared memory, one file descriptor each; a cache of
    thousands would exhaust them, so the cache keeps ordinary copies."""
    if isinstance(item, torch.Tensor):
        return item.clone()
    if isinstance(item, (tuple, list)):
        return type(item)(_own_copy(x) for x in item)
    return item


def _apply(transforms: Sequence[Callable], value):
    for transform in transforms:
        value = transform(value)
    return value


def _leading_deterministic(transforms) -> int:
    count = 0
    for transform in transforms:
        if is_random(transform):
            break
        count += 1
    return count


class _seeded_rngs:
    """Seed python, numpy, torch and MONAI transforms for one item; restore the globals after."""

    def __init__(self, seed, salt, epoch, position, transforms):
        self.seed = int(np.random.SeedSequence([seed, salt, epoch, position]).generate_state(1)[0])
        self.transforms = transforms

    def __enter__(self):
        self.saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        for transform in self.transforms:
            if hasattr(transform, "set_random_state"):
                transform.set_random_state(seed=self.seed)

    def __exit__(self, *exc):
        random.setstate(self.saved[0])
        np.random.set_state(self.saved[1])
        torch.set_rng_state(self.saved[2])


class EpochSampler(Sampler):
    """Yields `(epoch, index)`; the order is a pure function of (seed, epoch).

    Under DDP each rank takes every `world_size`-th item of the same order (padded
    by wrapping around, like DistributedSampler). `start` skips the batches a
    resumed run already trained on.
    """

    def __init__(self, length, shuffle, seed=0, batch_size=1, rank=0, world_size=1):
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.epoch, self.start_batch = 0, 0
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        padded = (order * self.world_size)[: self.per_rank * self.world_size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._order()[self.start_batch * self.batch_size :]:
            yield self.epoch, index

    def __len__(self):
        return max(self.per_rank - self.start_batch * self.batch_size, 0)


def _seed_worker(worker_id: int) -> None:
    ignore_stop_signals()  # SLURM and Ctrl-C signal every process; the main one checkpoints and stops the workers
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_loader(dataset: JobDataset, sampler: EpochSampler, batch_size, num_workers, device, seed) -> DataLoader:
    """A DataLoader with seeded workers; workers persist across epochs when there are any."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )
    if num_workers > 0:
        atexit.register(_stop_workers, weakref.ref(loader))
    return loader


def _stop_workers(loader_ref) -> None:
    """Stop a live loader's persistent workers before multiprocessing's exit hook does.

    That hook sends SIGTERM, which workers ignore (see _seed_worker), then waits for them
    forever; a loader still referenced at exit (a reference cycle, say) would hang the process.
    atexit runs hooks last-registered first, so this one runs before multiprocessing's.
    """
    loader = loader_ref()
    iterator = getattr(loader, "_iterator", None) if loader is not None else None
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
