"""Sweep overhead: the time to submit a SLURM array, and what a sweep member costs over the bare job.

The bare job is the member's own command run alone: `frame train <the member's overrides>`,
the classify experiment for one tiny epoch (64 samples). Each figure is measured in this
run against its baseline:

    local      N bare jobs one after another  vs  `frame train -m` with hydra/launcher=local
               (parallel=1: a process per member) and with the default sequential launcher
               (members in one process): per-member overhead = (sweep wall - N x bare) / N
    slurm      an `sbatch --array` of the bare job  vs  `frame train -m hydra/launcher=slurm`,
               both `--parallel` at a time: the submit time (sbatch call vs frame's
               "submitted ... in X s") and each task's SLURM run time (1 s resolution)
    submit     for each of `--members` (default 64,256,1000,4000): the time from the command's
               start to its job arrays submitted (stopped then, the arrays cancelled), and the
               part of it frame spent planning members and their run directories, `--rounds`
               rounds with the sizes interleaved (medians); past MaxArraySize (1001) members go
               in several arrays
    planning   the same planning in this process, no SLURM needed (the sweeper's check of the
               members' values and `frame.launch.sweep.plan`), per member, against composing one member
               in full as Hydra does (`load_sweep_config`), measured alongside

SLURM parts need the local cluster (`scripts/slurm-local up`); without `squeue` they are skipped.

    python scripts/bench/sweep.py [--members 64,256,1000,4000] [--rounds 1] [--run-members 16] [--parallel 2]
                                  [--json results.json]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

FRAME = [sys.executable, "-m", "frame", "train"]
JOB = ["experiment=classify", "data.dataset.num_samples=64", "trainer.epochs=1", "logger=[jsonl]"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
SUBMITTED = re.compile(r"submitted (\d+) members as SLURM job arrays? ([\d ]+) in ([\d.]+) s \(([\d.]+) s planning")


def _wall(argv, cwd) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def local(members: int, folder: Path) -> dict:
    """Bare jobs one after another, then the same members through both local launchers."""
    bare = [_wall([*FRAME, *JOB, f"seed={i}", f"hydra.run.dir=bare/{i}"], folder) for i in range(members)]
    seeds = f"seed=range(0,{members})"
    processes = _wall(
        [*FRAME, "-m", *JOB, seeds, "hydra/launcher=local", "hydra.launcher.parallel=1", "hydra.sweep.dir=local"],
        folder,
    )
    in_process = _wall([*FRAME, "-m", *JOB, seeds, "hydra.sweep.dir=sequential"], folder)
    per_bare = statistics.median(bare)
    return {
        "members": members,
        "bare_job_s": bare,
        "local_sweep_s": processes,
        "sequential_sweep_s": in_process,
        "local_overhead_per_member_s": processes / members - per_bare,
        "sequential_overhead_per_member_s": in_process / members - per_bare,
    }


def _squeue_empty(array_id: str) -> bool:
    return not subprocess.run(["squeue", "-h", "-r", "-j", array_id], capture_output=True, text=True).stdout.strip()


def _task_seconds(array_id: str) -> list[float]:
    """StartTime..EndTime of every task of a finished array (scontrol keeps them for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", array_id], capture_output=True, text=True, check=True).stdout
    seconds = []
    for line in out.splitlines():
        start, end = (re.search(rf"{key}=(\S+)", line).group(1) for key in ("StartTime", "EndTime"))
        seconds.append((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    return seconds


def slurm_bare(members: int, parallel: int, folder: Path) -> dict:
    """The bare job as a plain SLURM array: one `sbatch`, every task runs `frame train` once."""
    command = " ".join([*FRAME, *JOB, "seed=$SLURM_ARRAY_TASK_ID", "hydra.run.dir=bare-slurm/$SLURM_ARRAY_TASK_ID"])
    script = folder / "bare.sh"
    script.write_text(
        f"#!/bin/bash\n#SBATCH --array=0-{members - 1}%{parallel}\n#SBATCH --cpus-per-task=1\n"
        f"#SBATCH --mem=1G\n#SBATCH --output={folder}/bare-%A_%a.out\ncd {folder}\n{command}\n"
    )
    start = time.perf_counter()
    out = subprocess.run(["sbatch", str(script)], capture_output=True, text=True, check=True).stdout
    submitted = time.perf_counter() - start
    array_id = out.split()[-1]
    while not _squeue_empty(array_id):
        time.sleep(0.2)
    return {"submit_s": submitted, "wall_s": time.perf_counter() - start, "task_s": _task_seconds(array_id)}


def slurm_frame(members: int, parallel: int, folder: Path, stop_after_submit: bool = False, tag: str = "") -> dict:
    """frame's SLURM launcher; with stop_after_submit, Ctrl-C once the arrays are in and cancel them."""
    command = [
        *FRAME,
        "-m",
        *JOB,
        *SLURM,
        f"hydra.launcher.array_parallelism={parallel}",
        f"hydra.sweep.dir=slurm-{members}{tag}",
        f"seed=range(0,{members})",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found, lines = None, []
    for line in process.stdout:
        lines.append(line)
        if found is None and (found := SUBMITTED.search(line)):
            to_submitted = time.perf_counter() - start
            if stop_after_submit:
                process.send_signal(signal.SIGINT)
    process.wait()
    wall = time.perf_counter() - start
    if found is None or (process.returncode != 0 and not stop_after_submit):
        raise SystemExit("frame sweep failed:\n" + "".join(lines[-30:]))
    arrays = found.group(2).split()
    result = {
        "submit_s": float(found.group(3)),
        "planning_s": float(found.group(4)),
        "command_to_submitted_s": to_submitted,
        "arrays": len(arrays),
    }
    if stop_after_submit:
        subprocess.run(["scancel", *arrays], check=True)
    while not _squeue_empty(",".join(arrays)):  # frame returns on the result files, before SLURM marks them done
        time.sleep(0.2)
    return result if stop_after_submit else {**result, "wall_s": wall, "task_s": _task_seconds(arrays[0])}


def submit_scaling(sizes: list[int], rounds: int, parallel: int, folder: Path) -> dict:
    """Command start to arrays submitted, for each size; sizes interleaved round by round."""
    runs = {n: [] for n in sizes}
    for round_ in range(rounds):
        for n in sizes:
            runs[n].append(slurm_frame(n, parallel, folder, stop_after_submit=True, tag=f"-{round_}"))
    return {n: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for n, rs in runs.items()}


def planning(sizes: list[int], folder: Path) -> dict:
    """frame's planning in this process (check the values, then `frame.launch.sweep.plan`) for each size, and
    Hydra's composing of one member in full, per member (median of 5, between the sizes)."""
    from types import SimpleNamespace

    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from frame.config.members import check_values
    from frame.config.schema import register_configs
    from frame.launch import sweep

    previous = os.getcwd()
    os.chdir(folder)  # the run directories named are relative to it
    register_configs()
    result = {}
    with initialize_config_module(config_module="frame.conf", version_base=None):
        loader = GlobalHydra.instance().config_loader()
        for n in sizes:
            master = loader.load_configuration("train", [*JOB, f"seed=range(0,{n})"], RunMode.MULTIRUN)
            launcher = SimpleNamespace(config=master, hydra_context=SimpleNamespace(config_loader=loader))
            batch = [[f"seed={i}"] for i in range(n)]
            start = time.perf_counter()
            check_values(launcher, batch)
            members = sweep.plan(launcher, batch, 0)
            planned = time.perf_counter() - start
            assert len({m.run_dir for m in members}) == n
            full = []
            for i in range(5):
                start = time.perf_counter()
                loader.load_sweep_config(master, [f"seed={i}"])
                full.append(time.perf_counter() - start)
            result[n] = {
                "planning_s": planned,
                "per_member_ms": planned / n * 1e3,
                "hydra_compose_per_member_ms": statistics.median(full) * 1e3,
            }
    GlobalHydra.instance().clear()
    os.chdir(previous)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="64,256,1000,4000", help="sizes submitted to SLURM (submit time only)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the submit sizes (medians)")
    parser.add_argument("--run-members", type=int, default=16, help="members run to the end, bare and through frame")
    parser.add_argument("--parallel", type=int, default=2, help="SLURM array parallelism (this machine: 2 cores)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.members.split(",")]
    med = statistics.median
    results = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        folder = Path(tmp)
        loc = results["local"] = local(args.run_members, folder)
        print(
            f"{args.run_members} members run to the end, one at a time (bare job: median "
            f"{med(loc['bare_job_s']):.2f} s, its own start-up included)\n"
        )
        print("| | wall | per member | overhead per member |\n|---|---|---|---|")
        n = args.run_members
        print(f"| bare jobs, one after another | {sum(loc['bare_job_s']):.1f} s | {med(loc['bare_job_s']):.2f} s | - |")
        print(
            f"| local launcher (a process each) | {loc['local_sweep_s']:.1f} s | {loc['local_sweep_s'] / n:.2f} s "
            f"| {loc['local_overhead_per_member_s']:+.2f} s |"
        )
        print(
            f"| sequential launcher (one process) | {loc['sequential_sweep_s']:.1f} s | "
            f"{loc['sequential_sweep_s'] / n:.2f} s | {loc['sequential_overhead_per_member_s']:+.2f} s |"
        )
        plan = results["planning"] = planning(sizes, folder)
        print("\nplanning in this process (values checked, run directories named), no SLURM\n")
        print("| members | planning | per member | Hydra composing one member in full |\n|---|---|---|---|")
        for size, p in plan.items():
            print(
                f"| {size} | {p['planning_s']:.2f} s | {p['per_member_ms']:.2f} ms | "
                f"{p['hydra_compose_per_member_ms']:.0f} ms |"
            )
        if shutil.which("squeue") is None or subprocess.run(["squeue"], capture_output=True).returncode != 0:
            print("\nno SLURM cluster answers (scripts/slurm-local up): SLURM figures skipped")
        else:
            bare = results["slurm_bare"] = slurm_bare(n, args.parallel, folder)
            mine = results["slurm_frame"] = slurm_frame(n, args.parallel, folder)
            print(f"\nSLURM (local cluster), {n} members {args.parallel} at a time\n")
            print("| | bare array (`frame train` per task) | frame's SLURM launcher |\n|---|---|---|")
            print(f"| submit {n} members | {bare['submit_s']:.3f} s (sbatch) | {mine['submit_s']:.2f} s |")
            print(
                f"| task run time, median (1 s resolution) | {med(bare['task_s']):.0f} s | {med(mine['task_s']):.0f} s |"
            )
            print(f"| whole array, wall | {bare['wall_s']:.1f} s | {mine['wall_s']:.1f} s |")
            results["slurm_overhead_per_member_s"] = med(mine["task_s"]) - med(bare["task_s"])
            print(
                f"\nper-member overhead on SLURM: {results['slurm_overhead_per_member_s']:+.0f} s of task time; "
                f"{(mine['wall_s'] - bare['wall_s']) / n:+.2f} s of array wall per member"
            )
            scaling = results["slurm_submit"] = submit_scaling(sizes, args.rounds, args.parallel, folder)
            print(f"\nsubmitting through frame's SLURM launcher (median of {args.rounds})\n")
            print("| members | arrays | command start to submitted | planning | per member |\n|---|---|---|---|---|")
            for size, r in scaling.items():
                print(
                    f"| {size} | {r['arrays']:.0f} | {r['command_to_submitted_s']:.2f} s | {r['planning_s']:.2f} s | "
                    f"{r['command_to_submitted_s'] / size * 1e3:.1f} ms |"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.pop("WANDB_API_KEY", None)
    main()
