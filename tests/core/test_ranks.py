"""Which rank a process is, from torchrun's or SLURM's environment."""

import os

from frame.core.ranks import rank_env


def test_rank_env_from_torchrun_slurm_or_nothing(monkeypatch):
    def env_of(environ):
        for key in [k for k in os.environ if k.startswith(("SLURM_", "MASTER_")) or k in ("RANK", "WORLD_SIZE")]:
            monkeypatch.delenv(key)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        return rank_env()

    torchrun = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node1", "MASTER_PORT": "29400"}
    env = env_of(torchrun)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port, env.source) == (
        1,
        4,
        1,
        "node1",
        29400,
        "torchrun",
    )
    # a task of a 2-node SLURM job (submitit's TorchDistributedEnvironment): the first node is the master
    slurm = {
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "frame-node[3-4]",
    }
    env = env_of(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.source) == (3, 4, 1, "frame-node3", "slurm")
    assert env_of({**slurm, "SLURM_JOB_ID": "1234"}).master_port == env.master_port  # every rank and attempt agrees
    assert (
        20000 <= env.master_port <= 60000 and env_of({**slurm, "SLURM_JOB_ID": "1235"}).master_port != env.master_port
    )
    assert env_of({**slurm, "SLURM_NTASKS": "1"}) is None  # one task: no process group
    assert env_of({k: v for k, v in slurm.items() if k != "SLURM_STEP_ID"}) is None  # the batch script, not srun
    assert env_of({}) is None
