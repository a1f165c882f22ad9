"""Multi-fidelity: the same Optuna search with and without pruning, per seed.

The search is `hparams_search=classify_optuna` (TPE over lr, dropout and batch size) on the classify
experiment with overlapping clusters (`--spread 1.5`: the default clusters are learnt perfectly by
every trial), monitoring val/loss (a value that keeps moving, unlike accuracy):
`--trials` trials one at a time (n_jobs=1, so the pruner sees every finished trial), `--epochs` epochs
each, with the sampler seeded per `--seeds`. With pruning, `hydra.sweeper.pruner` is Optuna's
SuccessiveHalvingPruner (`--pruner halving`: rungs at 1, 3, 9 ... epochs, a third promoted at each) or from
epoch 2 (`--pruner halving-from-2`: rungs at 2, 6 ...), or MedianPruner (`--pruner median`: after 4 finished trials, from epoch 3, a trial below the median of the
others at the same epoch stops). Reported per search:
total epochs trained (from every member's metrics.jsonl), wall time, and the best val/loss found.
The target: at most half the epochs, with the pruned best value within the unpruned searches' range.

    python scripts/bench/pruning.py [--trials 16] [--epochs 9] [--seeds 0,1,2] [--samples 1024]
    python scripts/bench/pruning.py --quick     # 4 trials of 3 epochs, one seed: it still runs (CI)
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRUNERS = {
    "halving": "hydra.sweeper.pruner={_target_: optuna.pruners.SuccessiveHalvingPruner, min_resource: 1, reduction_factor: 3}",
    "halving-from-2": "hydra.sweeper.pruner={_target_: optuna.pruners.SuccessiveHalvingPruner, min_resource: 2, reduction_factor: 3}",
    "median": "hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner, n_startup_trials: 4, n_warmup_steps: 2}",
}


def search(root: Path, seed: int, pruned: bool, args) -> dict:
    """One search in its own sweep directory: epochs trained, wall seconds, best value, pruned members."""
    sweep_dir = root / f"{'pruned' if pruned else 'full'}-seed{seed}"
    command = [
        sys.executable,
        "-m",
        "frame",
        "train",
        "-m",
        "experiment=classify",
        "logger=[jsonl]",
        "hparams_search=classify_optuna",
        f"data.dataset.num_samples={args.samples}",
        f"+data.dataset.spread={args.spread}",
        f"trainer.epochs={args.epochs}",
        "trainer.monitor=val/loss",
        "trainer.monitor_mode=min",
        "hydra.sweeper.direction=minimize",
        f"hydra.sweeper.n_trials={args.trials}",
        "hydra.sweeper.n_jobs=1",
        f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweep.dir={sweep_dir}",
        *([PRUNERS[args.pruner]] if pruned else []),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"search failed ({result.returncode}):\n{result.stderr[-3000:]}")
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    epochs = 0
    for member in members:
        lines = (sweep_dir / member["run_dir"] / "metrics.jsonl").read_text().splitlines()
        epochs += max((json.loads(line).get("epoch") or 0 for line in lines), default=0)
    return {
        "seed": seed,
        "pruning": pruned,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "best": min(m["result"] for m in members if m["status"] == "complete"),
        "pruned_members": sum(m["status"] == "pruned" for m in members),
        "members": len(members),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument(
        "--spread", type=float, default=1.5, help="cluster overlap: the default one is learnt perfectly"
    )
    parser.add_argument("--pruner", choices=sorted(PRUNERS), default="halving-from-2")
    parser.add_argument(
        "--unpruned-from", type=Path, help="a --json file of an earlier run: its unpruned searches, not run again"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.seeds, args.samples = 4, 3, "0", 256
    rows = []
    earlier = json.loads(args.unpruned_from.read_text()) if args.unpruned_from else []
    with tempfile.TemporaryDirectory(prefix="frame-bench-pruning-") as tmp:
        for seed in map(int, args.seeds.split(",")):
            for pruned in (False, True):  # interleaved per seed: drift of a shared machine hits both
                kept = [r for r in earlier if not pruned and not r["pruning"] and r["seed"] == seed]
                rows.append(kept[0] if kept else search(Path(tmp), seed, pruned, args))
                print(json.dumps(rows[-1]), flush=True)
    full = [r for r in rows if not r["pruning"]]
    pruned = [r for r in rows if r["pruning"]]
    low, high = min(r["best"] for r in full), max(r["best"] for r in full)
    print(
        f"\n{args.trials} trials x {args.epochs} epochs, seeds {args.seeds}, classify ({args.samples} samples), "
        f"spread {args.spread}, val/loss (lower is better)"
    )
    print("| search | seed | epochs trained | wall s | best val/loss | members pruned |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {args.pruner if r['pruning'] else 'no pruning'} | {r['seed']} | {r['epochs']} | "
            f"{r['seconds']:.0f} | {r['best']:.4f} | {r['pruned_members']}/{r['members']} |"
        )
    ratio = sum(r["epochs"] for r in pruned) / sum(r["epochs"] for r in full)
    within = all(r["best"] <= high for r in pruned)
    print(
        f"\nepochs with pruning / without: {ratio:.2f} (target <= 0.5); wall: "
        f"{sum(r['seconds'] for r in pruned) / sum(r['seconds'] for r in full):.2f}; pruned best values "
        f"{'within or better than' if within else 'OUTSIDE'} the unpruned range [{low:.4f}, {high:.4f}]"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
