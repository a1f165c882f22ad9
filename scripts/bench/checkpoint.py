"""Checkpoints of the default experiment: size, write time, and the cost of resuming.

    python scripts/bench/checkpoint.py [repeats]

1. `frame train trainer.epochs=1` (the default experiment, CPU) makes a checkpoint.
2. In-process, from that run: the checkpoint's size, and the time of `Checkpoints.save` writing
   last.pt alone (a mid-epoch or stop checkpoint) and last.pt + best.pt + epoch-NNNN.pt (an
   epoch end with a new best), split into capture, serialisation and the synced writes; and
   the time to load it back (CRC check + weights-only load), check the config and restore.
3. Launch to first new step: `frame train trainer.epochs=2 trainer.log_every_n_steps=1` resuming
   that run, against the same command starting a new run (both read from `metrics.jsonl`),
   interleaved.
"""

import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import interleave

BIN = Path(sys.executable).parent
ARGS = ["trainer.device=cpu", "trainer.log_every_n_steps=1", "logger=[jsonl]", "name=bench"]
median = statistics.median


def _first_new_step(cwd: Path, after_step: int) -> float:
    """Seconds from launching `frame train trainer.epochs=2` in `cwd` to its first step past `after_step`."""
    start = time.time()
    subprocess.run(
        [str(BIN / "frame"), "train", *ARGS, "trainer.epochs=2"],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records = [json.loads(line) for line in (cwd / "outputs/bench/metrics.jsonl").read_text().splitlines()]
    return next(r["time"] for r in records if r["step"] > after_step) - start


def _in_process(run_dir: Path, repeats: int) -> dict:
    import torch
    from hydra import compose, initialize_config_module

    from frame.config.schema import register_configs
    from frame.training.build import build_job
    from frame.training.checkpoint import load_checkpoint
    from frame.training.loop import BadStepGuard, StepWindow
    from frame.training.resume_guard import check_resume
    from frame.training.state import TrainState, capture, restore

    register_configs()
    with initialize_config_module(config_module="frame.conf", version_base=None):
        cfg = compose("train", overrides=[*ARGS, "trainer.epochs=1"])
    job = build_job(cfg, run_dir)
    counters = {"window": StepWindow(job.device), "guard": BadStepGuard(job, 10)}
    state = TrainState()
    restore(job, state, job.resume_state, counters)
    path = job.checkpoints.dir / "last.pt"

    def timed(fn, after=None):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        if after is not None:  # finish the background write outside the timing, before the next round
            after()
        return elapsed

    def load_check_restore():
        saved = load_checkpoint(path)
        saved["_path"] = str(path)
        check_resume(saved, job.config_yaml, 1, force=False)
        restore(job, TrainState(), saved, counters)

    rounds = interleave(
        {
            "capture": lambda: timed(lambda: capture(job, state, counters)),
            "serialise (torch.save to memory)": lambda: timed(
                lambda: torch.save(capture(job, state, counters), io.BytesIO())
            ),
            "save last.pt: blocks training": lambda: timed(
                lambda: job.checkpoints.save(capture(job, state, counters)), after=job.checkpoints.wait
            ),
            "save last.pt: written": lambda: timed(
                lambda: (job.checkpoints.save(capture(job, state, counters)), job.checkpoints.wait())
            ),
            "save last.pt + best.pt + epoch-NNNN.pt: written": lambda: timed(
                lambda: (
                    job.checkpoints.save(capture(job, state, counters), best=True, epoch_end=True),
                    job.checkpoints.wait(),
                )
            ),
            "load (CRC + weights_only) + guard + restore": lambda: timed(load_check_restore),
        },
        repeats=repeats,
    )
    results = {name: {"median_s": median(times)} for name, times in rounds.items()}
    results["size of last.pt"] = {
        "bytes": path.stat().st_size,
        "model_params": sum(p.numel() for p in job.model.parameters()),
    }
    return results


def bench(repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        subprocess.run(
            [str(BIN / "frame"), "train", *ARGS, "trainer.epochs=1"],
            cwd=base,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        run_dir = base / "outputs/bench"
        steps = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["step"]
        results = _in_process(run_dir, repeats)

        def resumed():
            cwd = Path(tmp) / "resumed"
            shutil.rmtree(cwd, ignore_errors=True)
            shutil.copytree(base, cwd)
            return _first_new_step(cwd, steps)

        def fresh():
            cwd = Path(tmp) / "fresh"
            shutil.rmtree(cwd, ignore_errors=True)
            cwd.mkdir()
            return _first_new_step(cwd, 0)

        launch = interleave({"resume": resumed, "fresh": fresh}, repeats=repeats)
    results["launch to first new step: resuming"] = {"median_s": median(launch["resume"])}
    results["launch to first step: new run"] = {"median_s": median(launch["fresh"])}
    results["resume - new run"] = {"median_s": median(launch["resume"]) - median(launch["fresh"])}
    return results


if __name__ == "__main__":
    print(json.dumps(bench(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
