"""Tracking overhead: W&B offline + console progress bar + metrics.jsonl against no logging at all.

Same process, same job (the default experiment, or `--classify` for a fast MLP
where per-step costs show most), interleaved A B A B after a warm-up. Reports the steady
training time per epoch (`train/epoch_time_s`, what the loop measures, validation excluded;
the median over epochs 2..N of a fit: epoch 1 overlaps W&B's start-up) and its ratio to
"off" in the same round, as the median over rounds with their range (this machine drifts
by several percent between rounds, more than the overhead); also this process's CPU time per
fit (all its threads: the loop, rich's refresh, the heartbeat; W&B's own wandb-core process
is not in it) and the median wall time of a whole `fit` (W&B start-up and shutdown included).

    .venv/bin/python scripts/bench/tracking_overhead.py [--epochs 3] [--repeats 3] [--classify]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["TTY_COMPATIBLE"] = "1"  # rich draws the live bar as on a terminal (output goes to /dev/null)
os.environ.pop("WANDB_API_KEY", None)

from common import interleave  # noqa: E402  (scripts/bench is on sys.path when run as a script)

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
    parser.add_argument("--breakdown", action="store_true", help="also time jsonl+bar and jsonl+wandb alone")
    args = parser.parse_args()

    from hydra import compose, initialize_config_module

    from frame.config.schema import register_configs
    from frame.training.build import build_job
    from frame.training.loop import fit

    register_configs()
    base = [f"trainer.epochs={args.epochs}", "trainer.checkpoint_every_n_epochs=0"]
    if args.classify:
        base += ["experiment=classify", "data.dataset.num_samples=8192", "data.batch_size=32"]
    bar = ["logger.console.progress=bar", "logger.console.show_config=false"]
    setups = {
        "off": ["logger={}"],
        "on": ["logger=[jsonl,console,wandb]", "logger.wandb.mode=offline", *bar],
    }
    if args.breakdown:
        setups["jsonl+bar"] = ["logger=[jsonl,console]", *bar]
        setups["jsonl+wandb"] = ["logger=[jsonl,wandb]", "logger.wandb.mode=offline"]
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
                    start, cpu = time.perf_counter(), time.process_time()
                    fit(job)
                    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                finally:
                    sys.stdout.close()
                    sys.stdout = stdout
                steps = args.epochs * len(job.train_loader)
                return {"wall_s": wall, "cpu_s": cpu, "epochs_s": timer.times, "steps": steps}

        return run

    rounds = interleave({name: candidate(name) for name in setups}, repeats=args.repeats)
    off_rounds = rounds["off"]
    for name, runs in rounds.items():
        steady = [median(r["epochs_s"][1:] or r["epochs_s"]) for r in runs]  # epoch 1 holds the loggers' start-up
        ratios = [s / median(off["epochs_s"][1:] or off["epochs_s"]) for s, off in zip(steady, off_rounds)]
        results[name] = {
            "steady_epoch_s": median(steady),
            "ratio_to_off": median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "cpu_s": median(r["cpu_s"] for r in runs),
            "wall_s": median(r["wall_s"] for r in runs),
            "steps_per_fit": runs[0]["steps"],
        }
    off = results["off"]
    for name, r in results.items():
        print(
            f"{name:>11}: steady epoch {r['steady_epoch_s'] * 1000:7.1f} ms   CPU per fit {r['cpu_s']:6.2f} s   "
            f"wall per fit {r['wall_s']:6.2f} s   ({r['steps_per_fit']} steps per fit)"
        )
    for name, r in results.items():
        if name != "off":
            low, high = r["ratio_range"]
            print(
                f"{name} vs off: steady epoch {100 * (r['ratio_to_off'] - 1):+.1f}% (median of {args.repeats} paired "
                f"rounds; rounds ranged {100 * (low - 1):+.1f}% to {100 * (high - 1):+.1f}%), "
                f"wall per fit {r['wall_s'] - off['wall_s']:+.2f} s (start-up and finish included)"
            )
    return results


if __name__ == "__main__":
    main()
