"""Start-up: light commands, and the time from launch to the first training step.

Baselines measured in the same run: `python -c "import torch"` and a raw
script that builds the same job by hand (`_raw_first_step.py`). The time of
frame's first step is read from the first `metrics.jsonl` record
(`trainer.log_every_n_steps=1`), so frame needs no benchmark hook.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import interleave, median, time_command

BIN = Path(sys.executable).parent
FIRST_STEP = ["trainer.epochs=1", "trainer.log_every_n_steps=1", "trainer.device=cpu"]


def _frame_first_step() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        subprocess.run([str(BIN / "frame"), "train", *FIRST_STEP], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = json.loads((Path(tmp) / "outputs/organs/metrics.jsonl").read_text().splitlines()[0])
        return first["time"] - start


def _raw_first_step() -> float:
    start = time.time()
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("_raw_first_step.py"))],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1]) - start


def bench(repeats=5, extra_commands=None) -> dict:
    commands = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "frame --help": [str(BIN / "frame"), "--help"],
        "frame train --cfg job": [str(BIN / "frame"), "train", "--cfg", "job"],
        **(extra_commands or {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        rounds = interleave({name: (lambda argv=argv: time_command(argv, cwd=tmp)) for name, argv in commands.items()},
                            repeats=repeats)
    results = {name: {"median_s": median(times)} for name, times in rounds.items()}
    first = interleave({"raw": _raw_first_step, "frame": _frame_first_step}, repeats=repeats)
    results["first step: raw script"] = {"median_s": median(first["raw"])}
    results["first step: frame train"] = {"median_s": median(first["frame"])}
    results["first step: frame - raw"] = {"median_s": median(first["frame"]) - median(first["raw"])}
    return results


if __name__ == "__main__":
    print(json.dumps(bench(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
