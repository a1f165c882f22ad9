"""Tracking overhead: W&B offline + console progress bar + metrics.jsonl against no logging at all.

Same process, same job (the default experiment, or `--classify` for a fast MLP
where per-step costs show most), interleaved A B A B after a warm-up. Reports the median
training time per epoch (`train/epoch_time_s`, what the loop measures; validation excluded)
and the median wall time of a whole `fit` (W&B start-up and shutdown included).

    .venv/bin/python scripts/bench/tracking_overhead.py [--epochs 3] [--repeats 3] [--classify]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["TTY_COMPATIBLE"] = "1"  # rich draws the live bar as on a terminal (output goes to /dev/null)
os.environ.pop("WANDB_API_KEY", None)

from common import interleave, median  # noqa: E402

from frame.tracking.base import MetricLogger  # noqa: E402


class EpochTimes(MetricLogger):
    def __init__(self):
        self.times = []

    def log_metrics(self, metrics, step, epoch):
        if "train/epoch_time_s" in metrics:
            self.times.append(metrics["train/epoch_time_s"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classify", action="store_true")
    args = parser.parse_args()

    from hydra import compose, initialize_config_module

    from frame.build import build_job
    from frame.config.schema import register_configs
    from frame.loop import fit

    register_configs()
    base = [f"trainer.epochs={args.epochs}", "trainer.checkpoint_every_n_epochs=0"]
    if args.classify:
        base += ["experiment=classify", "data.dataset.num_samples=8192", "data.batch_size=32"]
    setups = {
        "off": ["logger={}"],
        "on": ["logger=[jsonl,console,wandb]", "logger.wandb.mode=offline", "logger.console.progress=bar",
               "logger.console.show_config=false"],
    }
    with initialize_config_module(config_module="frame.conf", version_base=None):
        configs = {name: compose("train", overrides=[*base, *extra]) for name, extra in setups.items()}
    results = {}

    def candidate(name):
        def run():
            with tempfile.TemporaryDirectory() as tmp:
                job = build_job(configs[name], Path(tmp))
                timer = EpochTimes()
                job.loggers.append(timer)
                stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
                try:
                    start = time.perf_counter()
                    fit(job)
                    wall = time.perf_counter() - start
                finally:
                    sys.stdout.close()
                    sys.stdout = stdout
                steps = args.epochs * len(job.train_loader)
                return {"wall_s": wall, "epoch_s": median(timer.times), "steps": steps}
        return run

    rounds = interleave({name: candidate(name) for name in setups}, repeats=args.repeats)
    for name, runs in rounds.items():
        results[name] = {"epoch_s": median(r["epoch_s"] for r in runs), "wall_s": median(r["wall_s"] for r in runs),
                         "steps_per_fit": runs[0]["steps"]}
    off, on = results["off"], results["on"]
    for name, r in results.items():
        print(f"{name:>4}: median epoch {r['epoch_s'] * 1000:8.1f} ms   median fit {r['wall_s']:6.2f} s   "
              f"({r['steps_per_fit']} steps per fit)")
    print(f"overhead per epoch: {100 * (on['epoch_s'] / off['epoch_s'] - 1):+.1f}%   "
          f"per fit (W&B start/finish included): {on['wall_s'] - off['wall_s']:+.2f} s")


if __name__ == "__main__":
    main()
