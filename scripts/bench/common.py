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
from collections.abc import Callable


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
    subprocess.run(
        argv,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def time_command_cpu(argv, env=None, cwd=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds: the child's user + system time) of one run of a command. CPU time is
    what a loaded machine inflates least: waiting for a core is not counted."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, argv)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


class StepClock:
    """Timestamps every optimizer step through a post-step hook (the same for every loop compared)."""

    def __init__(self, optimizer):
        self.stamps = []
        optimizer.register_step_post_hook(lambda *args: self.stamps.append(time.perf_counter()))

    def step_s(self) -> float:
        return median([b - a for a, b in zip(self.stamps, self.stamps[1:])])


def compose(overrides):
    """frame's `train` config with overrides, as `frame train` composes it (no run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from frame.config.schema import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="frame.conf", version_base=None):
        return hydra_compose("train", overrides=overrides)


def materialise(cfg, seed):
    """A job's data as in-memory tensors ((train samples, labels), (val samples, labels)), split and
    transformed exactly as frame does: what the hand-written loops and Lightning train on."""
    import math

    import torch
    from hydra.utils import instantiate

    dataset = instantiate(cfg.data.dataset)
    transforms = [instantiate(t) for t in cfg.data.sample_transforms]
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(math.floor(len(dataset) * cfg.data.split_ratio))

    def tensors(indices):
        samples, labels = zip(*(dataset[i] for i in sorted(indices)))
        for transform in transforms:
            samples = [transform(s) for s in samples]
        return torch.stack(samples), torch.stack(labels)

    return tensors(order[:cut]), tensors(order[cut:])


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


def lightning_module(cfg, configure_optimizers, compile_model=False):
    """The job's model and loss in a LightningModule, as the other loops train them;
    `configure_optimizers(module)` gives what Lightning's hook of that name returns."""
    import lightning as L
    from hydra.utils import instantiate

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.loss_fn = instantiate(cfg.model), instantiate(cfg.loss)
            if compile_model:
                self.model.compile()

        def training_step(self, batch, index):
            loss = self.loss_fn(self.model(batch[0]), batch[1])
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch, index):
            self.log("val/loss", self.loss_fn(self.model(batch[0]), batch[1]))

        def configure_optimizers(self):
            return configure_optimizers(self)

    return Module()
