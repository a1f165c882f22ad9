"""Run every benchmark, one after another, and keep their output.

    python scripts/bench/run.py            # full: the figures in BENCHMARKS.md
    python scripts/bench/run.py --quick    # one small round of each: checks they still work (CI)

Each benchmark is its own script (run alone for details); this prints their
tables and writes everything to scripts/bench/last-run.txt (full mode only).
"""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (full arguments, quick arguments)
BENCHMARKS = {
    "loop_overhead.py": (["5"], ["1", "--quick"]),
    "startup.py": (["5"], ["1"]),
    "tracking_overhead.py": (["--epochs", "3", "--repeats", "5"], ["--epochs", "1", "--repeats", "1", "--classify"]),
    "checkpoint.py": (["5"], ["1"]),
    "preload.py": (["--epochs", "3", "--rounds", "2", "--data-only", "--patients", "32"],
                   ["--epochs", "2", "--data-only", "--patients", "4"]),
    "sweep.py": (["--members", "64", "--run-members", "16"], ["--members", "4", "--run-members", "2"]),
}


def main() -> int:
    quick = "--quick" in sys.argv
    from common import machine

    report = [f"# frame benchmarks, {time.strftime('%Y-%m-%d %H:%M')} ({'quick' if quick else 'full'}): {machine()}"]
    print(report[0], flush=True)
    failed = []
    for script, (full, short) in BENCHMARKS.items():
        argv = [sys.executable, str(HERE / script), *(short if quick else full)]
        print(f"== {' '.join(argv[1:])}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=HERE, capture_output=True, text=True)
        print(result.stdout, end="")
        report += [f"\n## {script} ({time.perf_counter() - start:.0f} s)\n", result.stdout]
        if result.returncode != 0:
            failed.append(script)
            print(result.stderr[-3000:], file=sys.stderr)
    if not quick:
        (HERE / "last-run.txt").write_text("\n".join(report))
    print(f"{len(BENCHMARKS) - len(failed)} passed, {len(failed)} failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
