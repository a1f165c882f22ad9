"""Shared benchmark helpers: interleaved repeats, medians, ratios, the results file.

Every comparison runs its candidates interleaved (A B C A B C ...) after a
warm-up, so slow drift of a shared machine hits all of them alike, and reports
medians and ratios to a baseline measured in the same run.
"""

import os
import platform
import statistics
import subprocess
import time
from typing import Callable

def interleave(candidates: dict[str, Callable[[], dict]], repeats: int, warmup: int = 1) -> dict[str, list[dict]]:
    """Run each candidate `warmup` times, then `repeats` rounds of all of them in turn."""
    for _ in range(warmup):
        for run in candidates.values():
            run()
    rounds = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            rounds[name].append(run())
    return rounds


def median(values) -> float:
    return statistics.median(values)


def time_command(argv, env=None, cwd=None) -> float:
    """Wall seconds of one run of a command (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **(env or {})}, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
