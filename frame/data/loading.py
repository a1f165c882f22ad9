"""From a dataset to the loaders the loop iterates.

Three things make runs repeatable and resumable here:
- the split is a seeded permutation, so the same job always validates on the same items;
- `EpochSampler` draws each epoch's order from (seed, epoch) alone and can start
  mid-epoch, so a resumed run replays exactly the batches it had left;
- every item is transformed under RNGs seeded from (seed, epoch, index), so random
  transforms give the same result whichever worker, or which attempt, loads the item.
  Seeding costs a few microseconds an item (a cheap integer hash, nothing saved per item),
  so that a small job's many tiny items do not pay more for it than for the item itself.
"""

import atexit
import math
import random
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from frame.compat.torch import stop_loader_workers
from frame.core.errors import FrameError
from frame.core.signals import ignore_stop_signals


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


# torchvision transforms that draw random numbers without `Random` in their name
_TORCHVISION_RANDOM = {
    "ColorJitter",
    "GaussianBlur",
    "GaussianNoise",
    "ElasticTransform",
    "AutoAugment",
    "RandAugment",
    "TrivialAugmentWide",
    "AugMix",
    "ScaleJitter",
    "MixUp",
    "CutMix",
    "JPEG",
}


def is_random(transform) -> bool:
    """True for transforms whose output is random: MONAI's `Randomizable` (what CacheDataset stops
    its cache at), torchvision's `Random*` and its other random ones (`ColorJitter`, `RandAugment`, ...),
    and a torchvision `Compose` holding any of them. A project's own random transform subclasses
    `monai.transforms.Randomizable` to be left out of the preload cache."""
    monai_transforms = sys.modules.get("monai.transforms")
    if monai_transforms is not None and isinstance(transform, monai_transforms.Randomizable):
        return True
    if not type(transform).__module__.startswith("torchvision."):
        return False
    name = type(transform).__name__
    if name == "Compose":
        return any(is_random(inner) for inner in transform.transforms)
    return name.startswith("Random") or name in _TORCHVISION_RANDOM


ITEM_CONTRACT = (
    "an item is a (sample, target, *extra) tuple, or a mapping holding the sample and target under data.keys"
)


class JobDataset(Dataset):
    """A subset of a dataset with the job's item, sample and label transforms applied.

    Items are addressed as `(epoch, index)` (what `EpochSampler` yields) so that
    random transforms can be seeded per item and per epoch. An item comes out as
    `(sample, target)`, or a list of them when an item transform returns several
    (MONAI's `RandCropByPosNegLabeld`: the crops become batch items).

    Args:
        dataset: the user's dataset; items are `(sample, target, *extra)` or mappings.
        indices: which of its items this subset holds.
        sample_transforms / label_transforms: callables applied in order to the sample / the target.
        seed: job seed; `salt` separates the training and validation streams.
        preload: keep each item in memory after its leading deterministic transforms.
        preload_workers: loader processes that read the items into memory (the epoch's
            `num_workers`, so filling the cache costs about one epoch without it).
        item_transforms: callables applied in order to the whole item (a mapping for MONAI's
            dictionary transforms), before the sample and label transforms.
        keys: the mapping keys of the sample and the target.
    """

    def __init__(
        self,
        dataset,
        indices,
        sample_transforms=(),
        label_transforms=(),
        seed=0,
        salt=0,
        preload=False,
        preload_workers=0,
        item_transforms=(),
        keys=("image", "label"),
    ):
        self.dataset = dataset
        self.indices = list(indices)
        self.seed, self.salt = seed, salt
        self.keys = tuple(keys)
        # split once, not per item: the leading deterministic transforms (what preload caches), then the rest,
        # which runs under per-item seeds. Without preload nothing is cached, so every transform is seeded: a
        # project's random transform that is not Randomizable still gives the same item the same draw
        # (exact resume, any worker count). Sample and label transforms run after the item transforms, so
        # after a random one they all are "rest".
        item_split = _leading_deterministic(item_transforms) if preload else 0
        self._fixed_item, self._random_item = list(item_transforms[:item_split]), list(item_transforms[item_split:])
        sample_split = _leading_deterministic(sample_transforms) if preload and not self._random_item else 0
        label_split = _leading_deterministic(label_transforms) if preload and not self._random_item else 0
        self._fixed_sample, self._random_sample = (
            list(sample_transforms[:sample_split]),
            list(sample_transforms[sample_split:]),
        )
        self._fixed_label, self._random_label = (
            list(label_transforms[:label_split]),
            list(label_transforms[label_split:]),
        )
        self._random = self._random_item + self._random_sample + self._random_label
        self._generators = _own_generators(self._random)
        self._cache = self._fill(preload_workers) if preload else None

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys):
        """The items of one batch (a DataLoader asks for a whole batch through this). In the main process the
        python and torch generators are put back once per batch, not per item: dropout and a batch transform
        draw as if no item had been loaded. numpy's legacy global generator is left at the last item's seed
        (saving it costs ~20x seeding it, and nothing in the loop reads it; checkpoints still store it, so
        resume stays exact); a loader worker's generators serve its items alone, so nothing is put back."""
        keys = [key if type(key) is tuple else (0, key) for key in keys]
        if not self._random:
            return [self._item(position) for _, position in keys]  # already (sample, target) pairs
        with _kept_rngs():
            return [self._seeded(epoch, position) for epoch, position in keys]

    def _item(self, position):
        return self._cache[position] if self._cache is not None else self._deterministic_item(position)

    def _seeded(self, epoch, position):
        item = self._item(position)
        _seed_rngs(item_seed(self.seed, self.salt, epoch, position), self._generators)
        item = _apply(self._random_item, item)
        return self._pair(item, self._random_sample, self._random_label)

    def _fill(self, workers: int) -> list:
        if workers == 0:
            with _one_torch_thread():
                return [self._deterministic_item(i) for i in range(len(self.indices))]
        loader = DataLoader(
            _Deterministic(self), batch_size=None, num_workers=workers, collate_fn=_as_is, worker_init_fn=_seed_worker
        )
        return [_own_copy(item) for item in loader]

    def _deterministic_item(self, position):
        """The item after the deterministic prefix: item transforms, then (when no item transform is
        random) the sample and label transforms; a (sample, target) pair once those have run."""
        item = _apply(self._fixed_item, self.read(position))
        if self._random_item:
            return item
        return self._pair(item, self._fixed_sample, self._fixed_label)

    def read(self, position):
        """The dataset's item as it returned it, checked against the item contract."""
        return check_item(self.dataset, self.indices[position], self.keys)

    def _pair(self, item, sample_transforms=(), label_transforms=()):
        """(sample, target) from an item (or a list of them, the crops of one item), transformed."""
        if type(item) is tuple:  # the common case first: an ABC isinstance costs per item
            sample, target = item[0], item[1]
        elif isinstance(item, list):
            return [self._pair(part, sample_transforms, label_transforms) for part in item]
        else:
            sample, target = (item[self.keys[0]], item[self.keys[1]]) if isinstance(item, Mapping) else item[:2]
        return (
            _apply(sample_transforms, sample) if sample_transforms else sample,
            _apply(label_transforms, target) if label_transforms else target,
        )


def check_item(dataset, index: int, keys):
    """`dataset[index]`, a tuple when it is a list; FrameError when it breaks the item contract."""
    item = dataset[index]
    if type(item) is tuple and len(item) >= 2:
        return item
    name = type(dataset).__name__
    if isinstance(item, Mapping):
        missing = [k for k in keys if k not in item]
        if missing:
            raise FrameError(
                f"data.dataset ({name}) returned a mapping with keys {sorted(map(str, item))}, without "
                f"{', '.join(map(repr, missing))} (data.keys={list(keys)}); {ITEM_CONTRACT}."
            )
        return item
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        what = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
        raise FrameError(f"data.dataset ({name}) returned {what} for item {index}; {ITEM_CONTRACT}.")
    return tuple(item)


class _Deterministic(Dataset):
    """A JobDataset's items before their random transforms: what preload reads in loader workers."""

    def __init__(self, owner: JobDataset):
        self.owner = owner

    def __len__(self):
        return len(self.owner)

    def __getitem__(self, position):
        return self.owner._deterministic_item(position)


class _one_torch_thread:
    """Run the block on one torch thread, as a loader worker does (torch sets one in each). A volume's
    transforms are many small ops, and torch's intra-op threads cost more than they gain on them: on 2 cores
    a MONAI 3D preprocessing ran 3-4x slower on the default two threads than on one (CacheDataset fills in a
    Python thread, where ops also run on one). One thread also gives the cache the bits a worker would."""

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def _as_is(item):
    return item


def _own_copy(item):
    """Tensors from a worker arrive in shared memory, one file descriptor each; a cache of
    thousands would exhaust them, so the cache keeps ordinary copies."""
    if isinstance(item, torch.Tensor):
        return item.clone()
    if isinstance(item, (tuple, list)):
        return type(item)(_own_copy(x) for x in item)
    if isinstance(item, Mapping):
        return {key: _own_copy(value) for key, value in item.items()}
    return item


def collate(items: list):
    """A batch from `(sample, target)` pairs; an item that is a list of pairs (crops) gives several.

    MONAI's MetaTensors become plain tensors first: their metadata (affines, file names) differs
    from item to item and is not what the loop uses, and tracking it costs on every operation.
    """
    pairs = [pair for item in items for pair in (item if type(item) is list else (item,))]
    return default_collate([(_plain(sample), _plain(target)) for sample, target in pairs])


def _plain(value):
    return (
        value.as_subclass(torch.Tensor)
        if type(value) is not torch.Tensor and isinstance(value, torch.Tensor)
        else value
    )


def _apply(transforms: Sequence[Callable], value):
    """Each transform in turn; on a list (the crops `RandCropByPosNegLabeld` and its kin return), to each
    element, as MONAI's Compose does. A tuple is one `(sample, target, ...)` item, never mapped over."""
    for transform in transforms:
        value = [transform(part) for part in value] if type(value) is list else transform(value)
    return value


def _leading_deterministic(transforms) -> int:
    count = 0
    for transform in transforms:
        if is_random(transform):
            break
        count += 1
    return count


_MASK64 = (1 << 64) - 1


def item_seed(seed: int, salt: int, epoch: int, position: int) -> int:
    """A 32-bit seed for one item: the four numbers weighted by odd 64-bit constants, then splitmix64's
    finaliser (a bijection on 64 bits). A pure function, the same on every platform and Python, well
    under a microsecond where numpy's SeedSequence took ~70 us."""
    mixed = (
        seed * 0x9E3779B97F4A7C15
        + salt * 0xC2B2AE3D27D4EB4F
        + epoch * 0x165667B19E3779F9
        + position * 0xD6E8FEB86659FD93
    ) & _MASK64
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (mixed ^ (mixed >> 31)) >> 32


def _own_generators(transforms) -> list:
    """(transform, generator) for each transform that takes a random state. A MONAI `Randomizable`
    gets a RandomState of its own, reseeded per item and handed over with `set_random_state(state=)`:
    the same draws as `set_random_state(seed=)`, which builds a new RandomState each time (~0.1 ms,
    OS entropy included)."""
    monai_transforms = sys.modules.get("monai.transforms")
    owned = []
    for transform in transforms:
        if monai_transforms is not None and isinstance(transform, monai_transforms.Randomizable):
            owned.append((transform, np.random.RandomState()))
        elif hasattr(transform, "set_random_state"):
            owned.append((transform, None))
    return owned


def _seed_rngs(seed: int, generators) -> None:
    """Seed python, numpy's legacy global, torch's CPU generator and each transform's own generator."""
    random.seed(seed)
    np.random.seed(seed)
    # the CPU generator alone: torch.manual_seed also queues a CUDA seeding, ~2 ms an item with its
    # recorded stack trace
    torch.default_generator.manual_seed(seed)
    for transform, generator in generators:
        if generator is None:
            transform.set_random_state(seed=seed)
        else:
            generator.seed(seed)
            transform.set_random_state(state=generator)


class _kept_rngs:
    """In the main process, put python's and torch's CPU generator back as they were; in a loader
    worker (whose generators serve only its items) nothing to keep."""

    def __enter__(self):
        self.saved = None if get_worker_info() is not None else (random.getstate(), torch.get_rng_state())

    def __exit__(self, *exc):
        if self.saved is not None:
            random.setstate(self.saved[0])
            torch.set_rng_state(self.saved[1])


class EpochSampler(Sampler):
    """Yields `(epoch, index)`; the order is a pure function of (seed, epoch).

    Under DDP each rank takes every `world_size`-th item of the same order (padded
    by wrapping around, like DistributedSampler). `start` skips the batches a
    resumed run already trained on; `limit_batches` ends each epoch early
    (trainer.limit_train_batches, limit_val_batches).
    """

    def __init__(self, length, shuffle, seed=0, batch_size=1, rank=0, world_size=1, limit_batches=None):
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.epoch, self.start_batch = 0, 0
        self.per_rank = math.ceil(length / world_size)
        if limit_batches is not None:
            self.per_rank = min(self.per_rank, limit_batches * batch_size)

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
        collate_fn=collate,
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
    if loader is not None:
        stop_loader_workers(loader)
