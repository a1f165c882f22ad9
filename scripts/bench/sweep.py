"""Sweeps on SLURM: the time to submit a 64-member array, and what a frame member costs over a bare job.

Needs the local cluster (`scripts/slurm-local up`). Two arrays of the same size and parallelism:

    bare    sbatch --array: each task runs `srun true`
    frame   frame train -m hydra/launcher=slurm seed=range(0,N): each member trains the classify
            experiment for one tiny epoch (64 samples), through submitit and Hydra

Reported: the submission time (sbatch call vs frame's "submitted ... in X s", and from the
command's start to that line), each task's SLURM run time (StartTime..EndTime, 1 s resolution),
the part of a frame member spent building and training (run.json attempt), and the wall time
until the whole array is done.

    python scripts/bench/sweep.py [--members 64] [--parallel 8] [--json results.json]
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

FRAME = [sys.executable, "-m", "frame"]


def _array_done(array_id: str) -> bool:
    return not subprocess.run(["squeue", "-h", "-r", "-j", array_id], capture_output=True, text=True).stdout.strip()


def _task_seconds(array_id: str) -> list[float]:
    """StartTime..EndTime of every task of a finished array (scontrol keeps them for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", array_id], capture_output=True, text=True, check=True).stdout
    seconds = []
    for line in out.splitlines():
        start, end = (re.search(rf"{key}=(\S+)", line).group(1) for key in ("StartTime", "EndTime"))
        seconds.append((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    return seconds


def bare(members: int, parallel: int, folder: Path) -> dict:
    script = folder / "bare.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --array=0-{members - 1}%{parallel}\n#SBATCH --cpus-per-task=1\n"
                      f"#SBATCH --mem=1G\n#SBATCH --output={folder}/bare-%A_%a.out\nsrun true\n")
    start = time.perf_counter()
    out = subprocess.run(["sbatch", str(script)], capture_output=True, text=True, check=True).stdout
    submitted = time.perf_counter() - start
    array_id = out.split()[-1]
    while not _array_done(array_id):
        time.sleep(0.2)
    return {"submit_s": submitted, "wall_s": time.perf_counter() - start, "task_s": _task_seconds(array_id)}


def frame(members: int, parallel: int, folder: Path) -> dict:
    command = [*FRAME, "train", "-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
               "hydra.launcher.mem_gb=1", f"hydra.launcher.array_parallelism={parallel}", "experiment=classify",
               "data.dataset.num_samples=64", "trainer.epochs=1", "logger=[jsonl]", f"seed=range(0,{members})"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    submit_line, lines = None, []
    for line in process.stdout:
        lines.append(line)
        if submit_line is None and "submitted" in line and "SLURM job array" in line:
            submit_line = (time.perf_counter() - start, line)
    process.wait()
    wall = time.perf_counter() - start
    if process.returncode != 0 or submit_line is None:
        raise SystemExit("frame sweep failed:\n" + "".join(lines[-30:]))
    reported = float(re.search(r"in ([\d.]+) s \(([\d.]+) s composing", submit_line[1]).group(1))
    composing = float(re.search(r"\(([\d.]+) s composing", submit_line[1]).group(1))
    array_id = re.search(r"job array (\d+)", submit_line[1]).group(1)
    inside = []
    for run_json in (folder / "outputs" / "classify").glob("*/run.json"):
        attempt = json.loads(run_json.read_text())["attempts"][-1]
        inside.append(attempt["ended"] - attempt["started"])
    return {"submit_s": reported, "composing_s": composing, "command_to_submitted_s": submit_line[0], "wall_s": wall,
            "task_s": _task_seconds(array_id), "build_and_fit_s": inside}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=8, help="array parallelism (the local node has 8 slots)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        folder = Path(tmp)
        b = bare(args.members, args.parallel, folder)
        f = frame(args.members, args.parallel, folder)
    med = statistics.median
    rows = [
        ["submit the array (s)", f"{b['submit_s']:.3f}", f"{f['submit_s']:.2f} ({f['composing_s']:.2f} composing configs)"],
        ["command start to submitted (s)", "-", f"{f['command_to_submitted_s']:.2f}"],
        ["task run time, median (s)", f"{med(b['task_s']):.0f}", f"{med(f['task_s']):.0f}"],
        ["  of which build + 1 tiny epoch, median (s)", "-", f"{med(f['build_and_fit_s']):.2f}"],
        ["whole array, wall (s)", f"{b['wall_s']:.1f}", f"{f['wall_s']:.1f}"],
    ]
    overhead = med(f["task_s"]) - med(b["task_s"])
    print(f"{args.members} members, {args.parallel} at a time\n")
    print("|  | bare `srun true` | frame member |\n|---|---|---|")
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    print(f"\nper-member overhead over a bare job: {overhead:.0f} s of SLURM run time "
          f"(wall per member over the array: {(f['wall_s'] - b['wall_s']) / args.members:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps({"members": args.members, "parallel": args.parallel, "bare": b, "frame": f,
                                         "overhead_per_member_s": overhead}, indent=2) + "\n")


if __name__ == "__main__":
    main()
