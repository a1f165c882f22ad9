"""Run every benchmark, one after another, and keep their output.

    python scripts/bench/run.py            # full: the figures in docs/design/benchmarks.md
    python scripts/bench/run.py --quick    # one small round of each: checks they still work (CI)

Each benchmark is its own script (run alone for details); this prints their
tables and keeps everything (full mode only) in scripts/bench/last-run.txt and, per
benchmark, its arguments, duration and output (parsed when it printed JSON), in
scripts/bench/last-run.json.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, full arguments, quick arguments), in the order docs/design/benchmarks.md reports them
BENCHMARKS = [
    ("loop_overhead.py", ["7"], ["1", "--quick"]),
    ("startup.py", ["5"], ["1"]),
    ("tracking_overhead.py", ["--epochs", "10", "--repeats", "9"], ["--epochs", "2", "--repeats", "1"]),
    (
        "tracking_overhead.py",
        ["--classify", "--epochs", "6", "--repeats", "9"],
        ["--classify", "--epochs", "1", "--repeats", "1"],
    ),
    ("checkpoint.py", ["5"], ["1"]),
    ("small_job.py", ["5"], ["1", "--epochs", "2"]),
    (
        "small_job.py",
        ["5", "--epochs", "300", "--case", "items", "--no-lightning"],
        ["1", "--epochs", "2", "--case", "items", "--no-lightning"],
    ),
    ("item_overhead.py", ["9"], ["1", "--items", "256"]),
    ("monai_data.py", [], ["--quick"]),
    (
        "preload.py",
        ["--epochs", "3", "--rounds", "2", "--data-only", "--patients", "32"],
        ["--epochs", "2", "--data-only", "--patients", "4"],
    ),
    ("sweep.py", ["--members", "64,256,1000,4000", "--run-members", "16"], ["--members", "4,8", "--run-members", "2"]),
    ("pruning.py", [], ["--quick"]),  # the same Optuna search with and without pruning
    ("gpu.py", [], ["--quick"]),  # without CUDA always a quick CPU round
    ("gpu.py", ["--case", "unet128", "--rounds", "5", "--variants", "fp32,bf16"], ["--quick", "--case", "unet128"]),
    ("gpu.py", ["--case", "resnet50", "--rounds", "5"], ["--quick", "--case", "resnet50", "--variants", "fp32"]),
]


def main() -> int:
    quick = "--quick" in sys.argv
    from common import machine

    report = [f"# frame benchmarks, {time.strftime('%Y-%m-%d %H:%M')} ({'quick' if quick else 'full'}): {machine()}"]
    print(report[0], flush=True)
    failed, runs = [], []
    for script, full, short in BENCHMARKS:
        argv = [sys.executable, str(HERE / script), *(short if quick else full)]
        print(f"== {' '.join(argv[1:])}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=HERE, capture_output=True, text=True)
        print(result.stdout, end="")
        seconds = time.perf_counter() - start
        report += [f"\n## {' '.join(argv[1:])} ({seconds:.0f} s)\n", result.stdout]
        runs.append(
            {
                "script": script,
                "args": argv[2:],
                "seconds": round(seconds, 1),
                "returncode": result.returncode,
                "output": _parsed(result.stdout),
            }
        )
        if result.returncode != 0:
            failed.append(script)
            print(result.stderr[-3000:], file=sys.stderr)
    if not quick:
        (HERE / "last-run.txt").write_text("\n".join(report))
        (HERE / "last-run.json").write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    print(f"{len(BENCHMARKS) - len(failed)} passed, {len(failed)} failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


def _parsed(stdout: str):
    try:
        return json.loads(stdout)
    except ValueError:
        return stdout


if __name__ == "__main__":
    sys.exit(main())
