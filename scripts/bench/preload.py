"""Epoch time with and without `preload`, in one process, on a JSON job (default: the organs example).

    python scripts/bench/preload.py                   # the organs job on 32 generated patients
    python scripts/bench/preload.py --patients 64     # scaled up further
    python scripts/bench/preload.py path/to/job.json --epochs 4 data.num_workers=0

Builds the job twice, `data.preload=false` then `true` (then both again with
--rounds 2), trains a few epochs each and prints the training time of every
epoch (`train/epoch_time_s`: the batches of the epoch, validation excluded;
with --data-only, the time to iterate the training loader alone)
and the time the build took (with preload, the first pass over the data
happens there: the cost of filling the cache is the build time with preload
minus the build time without). Only the JSONL logger is kept; run directories
are temporary. For the organs job the data set is generated first (NIfTI
through the example's make_data.py, 96 x 96 x 32 voxels per patient).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(cfg, preload: bool, data_only: bool = False) -> dict:
    from omegaconf import open_dict

    from frame.training.build import build_job
    from frame.training.loop import fit

    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.data.preload = preload
        cfg.logger = {"jsonl": {"_target_": "frame.tracking.jsonl.JsonlLogger"}}
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        job = build_job(cfg, Path(run_dir))
        built = time.perf_counter() - start
        if data_only:  # only the loader: what preload changes
            epochs = []
            for epoch in range(cfg.trainer.epochs):
                job.train_sampler.set_epoch(epoch)
                start = time.perf_counter()
                for _ in job.train_loader:
                    pass
                epochs.append(time.perf_counter() - start)
        else:
            fit(job)
            epochs = [
                r["train/epoch_time_s"]
                for r in map(json.loads, open(Path(run_dir) / "metrics.jsonl"))
                if "train/epoch_time_s" in r
            ]
        del job  # stops the loader workers
    return {"preload": preload, "build_s": built, "epoch_s": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="repeat off/on this many times")
    parser.add_argument("--data-only", action="store_true", help="time iterating the training loader, no model")
    parser.add_argument("--patients", type=int, default=32, help="patients to generate for the organs job")
    parser.add_argument(
        "args",
        nargs="*",
        metavar="JOB.json | override",
        help="the job (default: the organs example) and Hydra overrides, e.g. data.num_workers=0",
    )
    args = parser.parse_args()

    from frame.config.check import check_job
    from frame.config.json_job import convert, is_job_file

    jobs = [a for a in args.args if is_job_file(a)]
    overrides = [a for a in args.args if not is_job_file(a)]
    with tempfile.TemporaryDirectory() as data:
        if not jobs:
            jobs = [str(REPO / "examples/organs/config/job_01.json")]
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "examples/organs/make_data.py"),
                    "--patients",
                    str(args.patients),
                    "--out",
                    data,
                ],
                check=True,
            )
            overrides.insert(0, f"data.dataset.root={data}")
        job = convert(jobs[0])
        cfg, _ = check_job(job, [f"trainer.epochs={args.epochs}", "trainer.checkpoint_every_n_epochs=0", *overrides])
        run(cfg, False, data_only=True)  # warm-up: the first build pays one-time imports (MONAI, nibabel)
        results = [run(cfg, preload, args.data_only) for _ in range(args.rounds) for preload in (False, True)]
    print(
        f"{jobs[0]} {' '.join(overrides)}: num_workers={cfg.data.num_workers}, "
        f"batch_size={cfg.data.batch_size}, {args.epochs} epochs"
    )
    for r in results:
        later = r["epoch_s"][1:] or r["epoch_s"]
        print(
            f"  preload={str(r['preload']).lower():5}  build {r['build_s']:6.2f} s   epochs "
            + " ".join(f"{t:6.2f}" for t in r["epoch_s"])
            + f"   median from epoch 2: {statistics.median(later):.2f} s"
        )
    off = statistics.median(t for r in results if not r["preload"] for t in r["epoch_s"][1:])
    on = statistics.median(t for r in results if r["preload"] for t in r["epoch_s"][1:])
    print(f"epoch time from epoch 2 on: {off:.2f} s without preload, {on:.2f} s with: {off / on:.1f}x faster")
    fill = statistics.median(r["build_s"] for r in results if r["preload"]) - statistics.median(
        r["build_s"] for r in results if not r["preload"]
    )
    first = statistics.median(r["epoch_s"][0] for r in results if r["preload"])
    print(
        f"filling the cache: +{fill:.2f} s of build time (the first pass over the data); "
        f"first epoch with preload {first:.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
