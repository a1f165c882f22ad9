"""Which process of a multi-process job this is, read from its environment alone (no torch, no
process group): rank 0 owns side effects, and even the config checks ask before claiming the
run directory, which the other ranks join instead.

Sources, the first that applies wins: torchrun (RANK, WORLD_SIZE, ...), a task of `srun`
(submitit's reading of SLURM's variables), nothing (one process, rank 0).
"""

import os
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RankEnv:
    """This process's place in a multi-process job, as its launcher described it."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # torchrun | slurm | spawn


def rank_env() -> RankEnv | None:
    """The multi-process job this process belongs to, or None when it runs alone."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env and int(env["WORLD_SIZE"]) > 1:
        return RankEnv(
            int(env["RANK"]),
            int(env["WORLD_SIZE"]),
            int(env.get("LOCAL_RANK", 0)),
            env.get("MASTER_ADDR", "127.0.0.1"),
            int(env.get("MASTER_PORT", 29500)),
            env.get("FRAME_RANK_SOURCE", "torchrun"),
        )
    # inside `srun` (a job step, not the batch script), with more than one task
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        # submitit's reading of the task (SLURM's node list, node[1-4,7], parsed as SLURM writes it), also
        # under a plain srun; imported only here: 0.2 s that other processes skip
        from submitit.slurm.slurm import SlurmJobEnvironment

        job = SlurmJobEnvironment()
        # the port submitit's TorchDistributedEnvironment draws: the same on every rank and every attempt
        port = int(env.get("MASTER_PORT") or random.Random(job.job_id).randint(20000, 60000))
        return RankEnv(
            job.global_rank, job.num_tasks, job.local_rank, env.get("MASTER_ADDR") or job.hostnames[0], port, "slurm"
        )
    return None


def global_rank() -> int:
    """This process's rank by its environment (0 when it runs alone): rank 0 owns side effects."""
    env = rank_env()
    return env.rank if env is not None else 0
