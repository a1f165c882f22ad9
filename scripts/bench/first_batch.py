"""The check before the first epoch (frame.training.first_batch) against one training step, on the default
experiment (3D UNet, synthetic organs). Run: .venv/bin/python scripts/bench/first_batch.py [rounds]

Both are timed in the same process, round by round, after one warm-up of each; the check runs one
training batch forward and backward and one validation batch through model, loss and evaluators.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from frame.config.schema import register_configs
from frame.training.build import build_job
from frame.training.first_batch import check_first_batches

REPO = Path(__file__).resolve().parents[2]


def main(rounds: int = 5) -> None:
    register_configs()
    with initialize_config_module(config_module="frame.conf", version_base=None):
        cfg = compose("train", overrides=["logger=[]"])
    job = build_job(cfg, Path(tempfile.mkdtemp()))
    autocast = torch.autocast("cpu", enabled=False)
    batches = iter(job.train_loader)

    def step():
        sample, target = next(batches)
        loss = job.loss_fn(job.train_model(sample), target)
        loss.backward()
        job.optimizer.step()
        job.optimizer.zero_grad(set_to_none=True)

    def check():
        check_first_batches(job, autocast, cfg.trainer.monitor)

    step(), check()  # warm-up
    checks, steps = [], []
    for _ in range(rounds):
        for times, call in ((checks, check), (steps, step)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    check_s, step_s = statistics.median(checks), statistics.median(steps)
    print(
        f"first-batch check {check_s * 1000:.0f} ms, one training step {step_s * 1000:.0f} ms "
        f"(ratio {check_s / step_s:.2f}; medians of {rounds} rounds, batch {cfg.data.batch_size}, "
        f"{torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
