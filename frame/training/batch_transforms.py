"""Transforms of the collated training batch (`data.batch_transforms`): torchvision v2's `MixUp`,
`CutMix` or a `RandomChoice` of them, as torchvision's reference recipe applies them after collation.

Each is called as `transform(sample, target)` and returns both (MixUp turns class indices into mixed
class probabilities, which `CrossEntropyLoss` takes as soft targets). They draw from torch's CPU
generator, seeded here per (seed, epoch, batch, rank) and put back after, so a resumed run mixes the
same batches the same way and nothing else's random stream moves. Validation never sees them: its
targets stay class indices for the evaluators.
"""

import numpy as np
import torch

from frame.core.errors import FrameError
from frame.training.evaluators import described


class BatchTransforms:
    """The job's batch transforms, applied in order under a seed of their own per batch."""

    def __init__(self, transforms: list, seed: int, rank: int = 0):
        self.transforms, self.seed, self.rank = transforms, seed, rank

    def __call__(self, sample, target, epoch: int, batch: int):
        """(sample, target) of training batch `batch` (counted in its epoch) of `epoch`, transformed.

        Raises:
            FrameError: a transform that fails on the batch, naming it and the shapes it got.
        """
        state = int(np.random.SeedSequence([self.seed, epoch, batch, self.rank]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):  # the CPU generator only: what MixUp and CutMix draw from
            torch.default_generator.manual_seed(state)
            for index, transform in enumerate(self.transforms):
                given = f"sample {described(sample)}, target {described(target)}"
                try:
                    sample, target = transform(sample, target)
                except (TypeError, ValueError, RuntimeError, IndexError) as error:
                    raise FrameError(
                        f"data.batch_transforms[{index}] ({type(transform).__name__}) fails on the "
                        f"training batch ({given}): {str(error).strip().splitlines()[0]} It gets the "
                        f"collated batch and class indices, e.g. images [B, C, H, W] and a target "
                        f"[B]."
                    ) from None
        return sample, target
