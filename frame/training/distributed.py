"""Several processes training one job: DistributedDataParallel set up from torchrun, SLURM or frame itself.

Where the processes come from (the first that applies wins; `frame.launch.corridor` starts or joins them):

    torchrun / torch.distributed.run        RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
    srun (SLURM tasks, submitit's           submitit's TorchDistributedEnvironment inside a job step:
      nodes=M, tasks_per_node=N)            ranks from SLURM_PROCID/SLURM_NTASKS, the first node of the
                                            job's node list is the master, the port follows from the job id
    trainer.devices=N and neither           frame starts N processes on this machine itself
                                            (`spawn`, torchrun-style environment variables)

Then every process joins one process group (NCCL when it trains on a GPU, gloo on the CPU),
checks that all ranks agree on the run directory, and trains its share: `World` is what the
loop and `build_job` see of it. Rank 0 owns side effects (checkpoints, metrics, W&B).

A rank that dies cannot hang the job: a collective that waits longer than
`trainer.dist_timeout_s` fails (gloo at once when a peer's socket closes).

Nothing here imports torch at module level. Which rank a process is comes from `frame.core.ranks`.
"""

import gc
import logging
import socket
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from frame.core.errors import FrameError
from frame.core.ranks import RankEnv
from frame.core.signals import StopFlag

log = logging.getLogger("frame")


class World:
    """The processes training one job, as seen by one of them.

    With one process every method is free and no torch.distributed call is made.
    Collectives (`max`, `same_on_all_ranks`, reading a SharedStop's `requested`) must be
    called by every rank in the same order.
    """

    def __init__(
        self, rank: int = 0, size: int = 1, local_rank: int = 0, cpu_group: Any = None, hosts: list[str] | None = None
    ):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.hosts = hosts or [socket.gethostname()]  # each rank's host, in rank order (run.json `hosts`)
        self._cpu_group = cpu_group  # gloo group for host-side agreement when the main backend is NCCL

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def max(self, value: int) -> int:
        """The largest of every rank's `value` (a one-int all-reduce on the CPU, no GPU sync)."""
        if self.size == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(int(value))
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self._cpu_group)
        return int(tensor)

    def shared(self, stop: StopFlag):
        """`stop` as every rank must see it: stopped when any rank got a signal (see SharedStop)."""
        return stop if self.size == 1 else SharedStop(stop, self)

    def same_on_all_ranks(self, value, what: str) -> None:
        """Raise FrameError unless every rank holds the same `value` (e.g. the run directory)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        values = [None] * self.size
        dist.all_gather_object(values, value, group=self._cpu_group)
        if len(set(map(str, values))) > 1:
            raise FrameError(
                f"the ranks disagree on the {what}: " + ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            )

    def wrap(self, model, device):
        """The model the training step calls: DistributedDataParallel across ranks, else the model itself."""
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class SharedStop:
    """A StopFlag that all ranks read alike, so all of them checkpoint and stop at the same step.

    Each read of `requested` is a collective (an all-reduce of the signal number over the
    ranks): the loop reads it at the same points on every rank, which keeps the ranks in
    step. A rank that got no signal itself takes the others' (`signal`); its own StopFlag
    stays untouched, so a later SIGINT there still counts as the first one.
    """

    def __init__(self, flag: StopFlag, world: World):
        self.flag, self.world = flag, world
        self._agreed: int | None = None

    def install(self) -> "SharedStop":
        self.flag.install()
        return self

    def restore(self) -> None:
        self.flag.restore()

    @property
    def signal(self) -> int | None:
        return self.flag.signal or self._agreed

    @property
    def requested(self) -> bool:
        agreed = self.world.max(self.flag.signal or 0)
        if agreed and self._agreed is None:
            self._agreed = agreed
        return bool(agreed)


def device_type(trainer_device: str) -> str:
    """cuda or cpu: what `trainer.device` resolves to on this machine (decides NCCL or gloo)."""
    if trainer_device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if trainer_device.startswith("cuda") else "cpu"


@contextmanager
def process_group(env: RankEnv, device: str, timeout_s: float):
    """Join the job's process group (NCCL on cuda, gloo on cpu) for the duration; yields the World."""
    import torch
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{env.master_addr}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timeout,
    )
    try:
        cpu_group = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None
        hosts = [None] * env.world_size
        dist.all_gather_object(hosts, socket.gethostname(), group=cpu_group)
        log.info(
            "rank %d of %d joined the process group (%s, %s) on %s",
            env.rank,
            env.world_size,
            backend,
            env.source,
            ", ".join(sorted(set(hosts))),
        )
        yield World(env.rank, env.world_size, env.local_rank, cpu_group, hosts)
    finally:
        # DDP's reducer sits in reference cycles: left to the collector, it may be freed only at exit,
        # after the group, and the rank aborts ("terminate called without an active exception")
        gc.collect()
        dist.destroy_process_group()
