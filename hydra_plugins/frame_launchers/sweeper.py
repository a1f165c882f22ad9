"""frame's default sweeper: Hydra's basic sweeper with a cheaper check of each batch.

Before launching a batch, Hydra's BasicSweeper composes every member once to catch
composition errors early: ~0.12 s a member with frame's config tree, 8 s for 64 members
before the first one is submitted. This sweeper makes the same check through
`frame.config.compose.member_config`, which applies a value-only member's overrides to a copy
of the sweep's config with Hydra's own override code (type checks included) and composes
every other member in full.
"""

from typing import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from frame.config.compose import member_config


class FrameSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        for overrides in batch:
            member_config(self, list(overrides))
