"""Per-item overhead of frame's dataset wrapper (`JobDataset` + `EpochSampler` + its collate) against a
plain `Dataset` + `DataLoader(shuffle=True)` doing the same work, in the main process (num_workers=0,
where a small job loads its items).

Three cases, each over 4096 items of 8 features in batches of 16:

    none       no transform (frame seeds nothing)
    project    one project transform (`x + 0.5`, a plain class: frame cannot tell whether it draws, so it
               runs under per-item seeds)
    monai      MONAI's RandGaussianNoise (Randomizable: frame seeds its generator per item; plain MONAI
               draws from the transform's own generator, unseeded)

Rounds are interleaved (plain, frame, plain, frame ...); per round the overhead is
(frame epoch - plain epoch) / items; the median over rounds is reported with its range.

    python scripts/bench/item_overhead.py [ROUNDS] [--items N]
"""

import argparse
import json
import time

import torch
from common import median
from torch.utils.data import DataLoader, Dataset

BATCH = 16


class Points(Dataset):
    def __init__(self, n):
        self.x, self.y = torch.randn(n, 8, generator=torch.Generator().manual_seed(0)), list(range(n))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i] % 4


class Shift:
    def __call__(self, x):
        return x + 0.5


class Transformed(Dataset):
    """The plain script's dataset: the same items with the transform applied in `__getitem__`."""

    def __init__(self, dataset, transforms):
        self.dataset, self.transforms = dataset, transforms

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        for transform in self.transforms:
            x = transform(x)
        return x, y


def _transforms(case):
    if case == "none":
        return []
    if case == "project":
        return [Shift()]
    from monai.transforms import RandGaussianNoise

    return [RandGaussianNoise(prob=1.0)]


def _epoch_s(loader, sampler=None, epoch=0) -> float:
    if sampler is not None:
        sampler.set_epoch(epoch)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def bench(rounds: int, items: int) -> dict:
    from frame.data.loading import EpochSampler, JobDataset, make_loader

    torch.set_num_threads(1)
    dataset, result = Points(items), {"items": items, "batch_size": BATCH, "rounds": rounds}
    for case in ("none", "project", "monai"):
        plain = DataLoader(
            Transformed(dataset, _transforms(case)),
            batch_size=BATCH,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        wrapped = JobDataset(dataset, range(items), _transforms(case), seed=0)
        sampler = EpochSampler(items, shuffle=True, seed=0, batch_size=BATCH)
        frame = make_loader(wrapped, sampler, BATCH, 0, torch.device("cpu"), seed=0)
        _epoch_s(plain), _epoch_s(frame, sampler)  # warm-up
        overheads, plain_us = [], []
        for round_ in range(rounds):
            p = _epoch_s(plain)
            f = _epoch_s(frame, sampler, round_)
            plain_us.append(p / items * 1e6)
            overheads.append((f - p) / items * 1e6)
        result[case] = {
            "plain_us_per_item": round(median(plain_us), 2),
            "frame_overhead_us_per_item": round(median(overheads), 2),
            "overhead_range_us": [round(min(overheads), 2), round(max(overheads), 2)],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=9)
    parser.add_argument("--items", type=int, default=4096)
    args = parser.parse_args()
    print(json.dumps(bench(args.rounds, args.items), indent=2))


if __name__ == "__main__":
    main()
