"""GPU step time: frame's loop against a hand-written loop and Lightning, on the default UNet.

The default experiment (MONAI's 3D UNet on synthetic 32^3 organ volumes, Dice+BCE, Adam, batch 2),
its data in memory (frame preloads it; the other two train on the same tensors), in three
variants: fp32, bf16 autocast, fp32 with torch.compile. The same features in all three loops:
gradient clipping at 1.0, the loss read every 50 steps, validation and a checkpoint each epoch;
frame also checks every step for a non-finite loss or gradient (without a host sync: its
optimizer is the fused Adam, which the other two loops get as well).

Per step: the mean gap between consecutive optimizer steps (an optimizer post-step hook, the same
in all three) after the first epoch (warm-up: compilation, cuDNN's choices, the allocator), gaps
across an epoch end (validation, checkpoint) left out. Also samples/s from it and the run's peak
GPU memory (torch.cuda.max_memory_allocated). Rounds are interleaved (raw, frame, lightning, raw,
...); medians are reported, and frame/raw as the median of the per-round ratios.

--case unet128 is the mid-size case that keeps an H100/H200 busy: the spleen tutorial's UNet (channels
16-256, 4 strides of 2, 2 residual units) on 128^3 volumes in batches of 4, the rest as above. On a
CPU (or with --quick) it shrinks to 32^3 and narrow channels so that one call proves it runs.

    python scripts/bench/gpu.py --out gpu.json      # on a GPU: about 4 minutes on an H200
    python scripts/bench/gpu.py --case unet128 --rounds 5 --variants fp32,bf16 --out unet128.json
    python scripts/bench/gpu.py --quick [--case unet128]   # on a CPU: a small round that proves it runs

--case resnet50 measures the loop alone on a 2D classifier: torchvision's ResNet-50 (1000 classes) on
224^2 images in batches of 128, cross-entropy, Adam, synthetic batches made on the device once and
fed to both loops (frame's loaders are swapped for them after `build_job`, so nothing is read or
copied), raw against frame only; epochs of 20 steps and 2 validation batches. --quick shrinks it to
a ResNet-18 (10 classes) on 32^2 images, batch 2, 3 steps.

    python scripts/bench/gpu.py --case resnet50 --rounds 5 --out resnet50.json
"""

import argparse
import contextlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import StepClock, compose, interleave, lightning_module, machine, materialise, median
from torch.utils.data import DataLoader, TensorDataset

SEED, CLIP, LOG_EVERY = 0, 1.0, 50
VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "compile": ("fp32", True)}  # precision, compile


def _resnet(name: str, classes: int) -> list[str]:
    """The classify experiment (cross-entropy, accuracy) with a torchvision ResNet for its model."""
    return [
        "experiment=classify",
        f"model._target_=torchvision.models.{name}",
        "~model.in_features",
        "~model.hidden",
        "~model.out_features",
        "~model.dropout",
        f"+model.num_classes={classes}",
        "trainer.monitor=val/loss",
        "trainer.monitor_mode=min",
    ]


# case -> (overrides, overrides in quick mode)
CASES = {
    "default": ([], ["data.dataset.size=[16,16,16]", "model.channels=[4,8]", "model.strides=[2]"]),
    "unet128": (
        [
            "data.dataset.size=[128,128,128]",
            "data.batch_size=4",
            "model.channels=[16,32,64,128,256]",
            "model.strides=[2,2,2,2]",
            "model.num_res_units=2",
        ],
        [
            "data.dataset.size=[32,32,32]",
            "data.batch_size=4",
            "model.channels=[4,8,16,32,64]",
            "model.strides=[2,2,2,2]",
            "model.num_res_units=2",
        ],
    ),
    "resnet50": (_resnet("resnet50", 1000), _resnet("resnet18", 10)),
}
DEVICE_DATA = {"resnet50": {"full": (224, 128, 20), "quick": (32, 2, 3)}}  # case -> mode -> (size, batch, steps)


class DeviceBatches:
    """The same `steps` (images, labels) batches, made once on the device, as an iterable loader."""

    def __init__(self, device, size, batch, steps, classes):
        generator = torch.Generator(device=device).manual_seed(SEED)
        self.batches = [
            (
                torch.randn(batch, 3, size, size, device=device, generator=generator),
                torch.randint(classes, (batch,), device=device, generator=generator),
            )
            for _ in range(min(steps, 4))  # a few distinct batches, cycled: memory stays small
        ]
        self.steps = steps
        # what frame's first-batch check reads of a DataLoader: it makes the first batch itself
        self.dataset, self.sampler, self.batch_size = list(zip(*self.batches[0])), range(batch), batch

    @staticmethod
    def collate_fn(items):
        return tuple(torch.stack(parts) for parts in zip(*items))

    def __iter__(self):
        return (self.batches[i % len(self.batches)] for i in range(self.steps))

    def __len__(self):
        return self.steps


class Setup:
    """One variant's config and run lengths; `quick` shrinks the model and data to CPU size."""

    def __init__(self, variant, device, quick, epochs, samples, case="default"):
        self.precision, self.compile = VARIANTS[variant]
        self.device, self.epochs = device, epochs
        self.device_data = DEVICE_DATA.get(case, {}).get("quick" if quick else "full")
        self.cfg = compose(
            [
                *CASES[case][1 if quick else 0],
                f"data.dataset.num_samples={samples}",
                "data.split_ratio=0.8",
                "data.preload=true",
                f"trainer.epochs={epochs}",
                f"trainer.grad_norm_clip={CLIP}",
                f"trainer.log_every_n_steps={LOG_EVERY}",
                f"trainer.precision={self.precision}",
                f"trainer.compile={self.compile}",
                f"trainer.device={device}",
                "trainer.checkpoint_every_n_epochs=0",
                "logger=[jsonl]",
                f"seed={SEED}",
            ]
        )
        self.batch_size = self.cfg.data.batch_size
        self.steps_per_epoch = -(-int(samples * 0.8) // self.batch_size)
        if self.device_data is not None:
            self.batch_size, self.steps_per_epoch = self.device_data[1], self.device_data[2]

    def loaders(self):
        """(train, validation) batches made on the device (cases in DEVICE_DATA)."""
        size, batch, steps = self.device_data  # pyright: ignore[reportGeneralTypeIssues]
        classes = self.cfg.model.num_classes
        return DeviceBatches(self.device, size, batch, steps, classes), DeviceBatches(
            self.device, size, batch, 2, classes
        )

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    def result(self, clock, peak_bytes) -> dict:
        """Per-step seconds from the stamps of every epoch after the first, epoch ends left out."""
        per_epoch = self.steps_per_epoch
        gaps = [
            b - a
            for i, (a, b) in enumerate(zip(clock.stamps, clock.stamps[1:]))
            if i >= per_epoch and (i + 1) % per_epoch
        ]
        step_s = sum(gaps) / len(gaps)
        return {"step_ms": step_s * 1e3, "samples_per_s": self.batch_size / step_s, "peak_mib": peak_bytes / 2**20}


def _fresh_peak():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak() -> int:
    if not torch.cuda.is_available():
        return 0
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def _optimizer(params, setup):
    return torch.optim.Adam(params, lr=setup.cfg.optimizer.lr, fused=torch.device(setup.device).type == "cuda")


def run_frame(setup):
    from frame.training.build import build_job
    from frame.training.loop import fit

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        job = build_job(setup.cfg, Path(tmp))
        if setup.device_data is not None:  # the loop alone: frame's loaders swapped for batches already on the device
            job.train_loader, job.val_loader = setup.loaders()  # pyright: ignore[reportAttributeAccessIssue]
        clock = StepClock(job.optimizer)
        _fresh_peak()
        fit(job)
        return setup.result(clock, _peak())


def run_raw(setup):
    """A plain hand-written loop: no bad-step check, the rest as frame."""
    from hydra.utils import instantiate

    torch.manual_seed(SEED)
    device = torch.device(setup.device)
    model = instantiate(setup.cfg.model).to(device)
    if setup.compile:
        model.compile()
    loss_fn = instantiate(setup.cfg.loss)
    optimizer = _optimizer(model.parameters(), setup)
    clock = StepClock(optimizer)
    if setup.device_data is not None:
        train, val = setup.loaders()
    else:
        (x_train, y_train), (x_val, y_val) = materialise(setup.cfg, SEED)
        pin = device.type == "cuda"
        train = DataLoader(TensorDataset(x_train, y_train), batch_size=setup.batch_size, shuffle=True, pin_memory=pin)
        val = DataLoader(TensorDataset(x_val, y_val), batch_size=setup.batch_size, pin_memory=pin)
    _fresh_peak()
    with tempfile.TemporaryDirectory() as tmp:
        step = 0
        for _ in range(setup.epochs):
            model.train()
            running = torch.zeros((), device=device)
            for x, y in train:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with setup.autocast():
                    loss = loss_fn(model(x), y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                running += loss.detach()
                step += 1
                if step % LOG_EVERY == 0:
                    float(running), running.zero_()
            model.eval()
            with torch.no_grad(), setup.autocast():
                val_loss = sum(float(loss_fn(model(x.to(device)), y.to(device))) for x, y in val)
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "val": val_loss},
                Path(tmp) / "last.pt",
            )
    return setup.result(clock, _peak())


def run_lightning(setup):
    import lightning as L

    torch.manual_seed(SEED)
    (x_train, y_train), (x_val, y_val) = materialise(setup.cfg, SEED)
    clocks = []

    def optimizer(module):
        made = _optimizer(module.parameters(), setup)
        clocks.append(StepClock(made))
        return made

    cuda = torch.device(setup.device).type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_epochs=setup.epochs,
            accelerator="gpu" if cuda else "cpu",
            devices=1,
            # Lightning refuses to clip a fused optimizer's gradients under mixed precision: in bf16 it clips nothing
            gradient_clip_val=CLIP if setup.precision != "bf16" or not cuda else None,
            precision="bf16-mixed" if setup.precision == "bf16" else "32-true",
            log_every_n_steps=LOG_EVERY,
            logger=L.pytorch.loggers.CSVLogger(tmp),
            default_root_dir=tmp,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        _fresh_peak()
        trainer.fit(
            lightning_module(setup.cfg, optimizer, setup.compile),
            DataLoader(TensorDataset(x_train, y_train), batch_size=setup.batch_size, shuffle=True, pin_memory=cuda),
            DataLoader(TensorDataset(x_val, y_val), batch_size=setup.batch_size, pin_memory=cuda),
        )
    return setup.result(clocks[-1], _peak())


def bench(device, variants, rounds, quick, epochs, samples, out=None, case="default") -> dict:
    """Every variant's row; after each one the results so far go to `out` (a timeout keeps them)."""
    runners = {"raw": run_raw, "frame": run_frame}
    try:
        import lightning  # noqa: F401

        if case not in DEVICE_DATA:  # Lightning trains from its own loaders
            runners["lightning"] = run_lightning
    except ImportError:
        pass
    results = {}
    for variant in variants:
        start = time.perf_counter()
        setup = Setup(variant, device, quick, epochs, samples, case)
        # compile: one round (each compiles afresh, most of a minute with inductor)
        repeats = 1 if VARIANTS[variant][1] else rounds
        measured = interleave(
            {name: (lambda run=run: run(setup)) for name, run in runners.items()}, repeats=repeats, warmup=0
        )
        row = {name: {key: median([r[key] for r in runs]) for key in runs[0]} for name, runs in measured.items()}
        ratios = [f["step_ms"] / r["step_ms"] for f, r in zip(measured["frame"], measured["raw"])]
        row["frame_over_raw"] = median(ratios)
        row["rounds"], row["seconds"] = repeats, round(time.perf_counter() - start, 1)
        results[variant] = row
        print(f"# {variant}: {row['seconds']} s", flush=True)
        if out:
            out.write_text(json.dumps({"machine": machine(), "quick": quick, "results": results}, indent=2) + "\n")
    return results


def table(results) -> str:
    lines = [f"{'variant':8} {'loop':10} {'ms/step':>8} {'samples/s':>10} {'peak MiB':>9}"]
    for variant, row in results.items():
        for name in ("raw", "frame", "lightning"):
            if name in row:
                r = row[name]
                lines.append(
                    f"{variant:8} {name:10} {r['step_ms']:8.2f} {r['samples_per_s']:10.1f} {r['peak_mib']:9.1f}"
                )
        lines.append(f"{variant:8} {'frame/raw':10} {row['frame_over_raw']:8.3f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small model and few steps: proves the script runs (always so without CUDA)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant (compile: 1)")
    parser.add_argument("--variants", default="fp32,bf16,compile")
    parser.add_argument("--case", choices=sorted(CASES), default="default")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cuda = torch.cuda.is_available()
    quick = args.quick or not cuda
    variants = args.variants.split(",")
    if not cuda:  # the full sizes take an hour on a CPU, and inductor's C++ build most of a minute
        print("# no CUDA device: a quick CPU round without compile (it proves the script runs)", flush=True)
        variants = [v for v in variants if v != "compile"]
    # epochs of 80 steps (200 items, batch 2), the first one warm-up; quick: 2 epochs of 4
    # unet128: epochs of 10 steps (50 items, batch 4)
    epochs, samples = (2, 10) if quick else (4, 200 if args.case == "default" else 50)
    results = bench(
        "cuda" if cuda else "cpu", variants, 1 if quick else args.rounds, quick, epochs, samples, args.out, args.case
    )
    print(table(results))
    print(json.dumps({"machine": machine(), "quick": quick, "results": results}, indent=2))


if __name__ == "__main__":
    main()
