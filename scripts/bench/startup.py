"""Start-up: light commands, and the time from launch to the first training step.

Baselines measured in the same run: `python -c "import torch"`, the smallest
Hydra app (one key, `--cfg job`: what any Hydra command costs in this venv,
plugins included), and a raw script that builds the same job by hand
(`_raw_first_step.py`). `frame check` runs on the organs example's job with a
small generated data set. The time of frame's first step is read from the first
`metrics.jsonl` record (`trainer.log_every_n_steps=1`), so frame needs no
benchmark hook. `import monai` runs as MONAI does it and as a frame training
does it (frame.training.monai_import: Optuna left unimported).

Ratios are medians of per-round ratios (each round runs every command once, in
turn), so a shared machine's slow spells hit both sides of a ratio alike;
`cpu_s` (the child's user + system time) is steadier than wall time there.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import interleave, median, time_command

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
HYDRA_APP = """import hydra

@hydra.main(version_base=None, config_path=".", config_name="app")
def main(cfg):
    pass

main()
"""
FIRST_STEP = [
    "trainer.epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.device=cpu",
    "data.preload=false",
    "name=organs",
]  # like the raw script: the first batch only, not all 40 volumes first


DEFERRED_MONAI = "from frame.training.monai_import import defer_optuna; defer_optuna(); import monai"
# (command, its baseline): the ratio reported per round
RATIOS = {"frame train --cfg job": "smallest Hydra app --cfg job", "import monai, as frame trains": "import monai"}


def _wall_and_cpu(argv, cwd) -> tuple[float, float]:
    """Wall seconds and the child's CPU seconds (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time_command(argv, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _paired(rounds: dict, name: str, baseline: str, pick=lambda run: run) -> float:
    return median([pick(a) / pick(b) for a, b in zip(rounds[name], rounds[baseline])])


def _frame_first_step() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        subprocess.run(
            [str(BIN / "frame"), "train", *FIRST_STEP],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        first = json.loads((Path(tmp) / "outputs/organs/metrics.jsonl").read_text().splitlines()[0])
        return first["time"] - start


def _raw_first_step(*flags: str) -> float:
    start = time.time()
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_raw_first_step.py")), *flags],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1]) - start


def bench(repeats=5, extra_commands=None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "app.py").write_text(HYDRA_APP)
        Path(tmp, "app.yaml").write_text("lr: 0.1\n")
        data = Path(tmp, "organs")
        subprocess.run(
            [sys.executable, str(REPO / "examples/organs/make_data.py"), "--patients", "2", "--out", str(data)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "smallest Hydra app --cfg job": [sys.executable, "app.py", "--cfg", "job"],
            "frame --help": [str(BIN / "frame"), "--help"],
            "frame train --cfg job": [str(BIN / "frame"), "train", "--cfg", "job"],
            "frame check job_01.json": [
                str(BIN / "frame"),
                "check",
                str(REPO / "examples/organs/config/job_01.json"),
                f"data.dataset.root={data}",
            ],
            "import monai": [sys.executable, "-c", "import monai"],
            "import monai, as frame trains": [sys.executable, "-c", DEFERRED_MONAI],
            **(extra_commands or {}),
        }
        rounds = interleave(
            {name: (lambda argv=argv: _wall_and_cpu(argv, cwd=tmp)) for name, argv in commands.items()}, repeats=repeats
        )
    results = {
        name: {"median_s": median([wall for wall, _ in runs]), "cpu_s": median([cpu for _, cpu in runs])}
        for name, runs in rounds.items()
    }
    for name, baseline in RATIOS.items():
        results[name].update(
            {
                "x_" + baseline: _paired(rounds, name, baseline, lambda run: run[0]),
                "cpu_x_" + baseline: _paired(rounds, name, baseline, lambda run: run[1]),
            }
        )
    first = interleave(
        {"raw": _raw_first_step, "raw, gc off": lambda: _raw_first_step("--gc-off"), "frame": _frame_first_step},
        repeats=repeats,
    )
    results["first step: raw script"] = {"median_s": median(first["raw"])}
    results["first step: raw script, gc off"] = {"median_s": median(first["raw, gc off"])}
    results["first step: frame train"] = {
        "median_s": median(first["frame"]),
        "x_raw script": _paired(first, "frame", "raw"),
    }
    results["first step: frame - raw"] = {"median_s": median([f - r for f, r in zip(first["frame"], first["raw"])])}
    results["first step: frame - raw, gc off"] = {
        "median_s": median([f - r for f, r in zip(first["frame"], first["raw, gc off"])])
    }
    return results


if __name__ == "__main__":
    print(json.dumps(bench(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
