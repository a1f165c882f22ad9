"""Loop overhead: frame's loop against a hand-written PyTorch loop and Lightning.

Same model, data, optimizer, seed and features in all three: Adam, gradient
clipping at 1.0, a non-finite check that skips bad steps (frame and raw;
Lightning has no such option), cosine schedule per epoch, validation each
epoch, training scalars logged every 50 steps, last checkpoint each epoch.
Per-step time is the median gap between consecutive optimizer steps (an
optimizer post-step hook, identical for all three); ratios to the raw loop are
taken round by round (A B C A B C ...), then their median. Also checks that frame's
final weights equal the raw loop's bit for bit.
"""

import contextlib
import os
import tempfile
import time
from pathlib import Path

import torch
from common import StepClock, compose, interleave, lightning_module, materialise, median
from torch.utils.data import DataLoader, TensorDataset

SEED, CLIP, LOG_EVERY = 0, 1.0, 50

SETUPS = {
    # name: (frame overrides, epochs)
    "mlp": (["experiment=classify", "data.dataset.num_samples=4096", "data.batch_size=32", "optimizer.lr=1e-3"], 3),
    "unet3d": (["data.preload=true"], 2),
}


def _config(setup):
    overrides, epochs = SETUPS[setup]
    return compose(
        [
            *overrides,
            f"trainer.epochs={epochs}",
            f"trainer.grad_norm_clip={CLIP}",
            "lr_scheduler=cosine",
            f"trainer.log_every_n_steps={LOG_EVERY}",
            "trainer.checkpoint_every_n_epochs=0",
            f"seed={SEED}",
            "trainer.device=cpu",
        ]
    )


def run_frame(setup):
    from frame.training.build import build_job
    from frame.training.loop import fit

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        job = build_job(_config(setup), Path(tmp))  # the default loggers: metrics.jsonl and the console
        clock = StepClock(job.optimizer)
        start = time.perf_counter()
        fit(job)
        elapsed = time.perf_counter() - start
    return {"step_s": clock.step_s(), "epoch_s": elapsed / job.cfg.trainer.epochs, "weights": _flat(job.model)}


def run_raw(setup):
    """A minimal hand-written loop with the same features."""
    from hydra.utils import instantiate

    cfg = _config(setup)
    torch.manual_seed(SEED)
    (x_train, y_train), (x_val, y_val) = materialise(cfg, SEED)
    model = instantiate(cfg.model)
    loss_fn = instantiate(cfg.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.trainer.epochs)
    clock = StepClock(optimizer)
    train_set, val_set = TensorDataset(x_train, y_train), TensorDataset(x_val, y_val)
    batch_size, epochs = cfg.data.batch_size, cfg.trainer.epochs
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        step, log = 0, []
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(SEED * 100_003 + epoch))
            running = torch.zeros(())
            # own generator: a DataLoader without one draws a seed from the global RNG (and so shifts dropout)
            for x, y in DataLoader(
                train_set, batch_size=batch_size, sampler=order.tolist(), generator=torch.Generator()
            ):
                loss = loss_fn(model(x), y)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
                if torch.isfinite(loss) and torch.isfinite(norm):
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                running += loss.detach()
                step += 1
                if step % LOG_EVERY == 0:
                    log.append((step, float(running) / LOG_EVERY, optimizer.param_groups[0]["lr"]))
                    running.zero_()
            model.eval()
            with torch.no_grad():
                val_batches = DataLoader(val_set, batch_size=batch_size, generator=torch.Generator())
                val_loss = sum(float(loss_fn(model(x), y)) for x, y in val_batches)
            log.append((step, val_loss))
            scheduler.step()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, Path(tmp) / "last.pt")
        elapsed = time.perf_counter() - start
    return {"step_s": clock.step_s(), "epoch_s": elapsed / epochs, "weights": _flat(model)}


def run_lightning(setup):
    import lightning as L

    cfg = _config(setup)
    torch.manual_seed(SEED)
    (x_train, y_train), (x_val, y_val) = materialise(cfg, SEED)
    clocks = []

    def optimizers(module):
        optimizer = torch.optim.Adam(module.parameters(), lr=cfg.optimizer.lr)
        clocks.append(StepClock(optimizer))
        return {
            "optimizer": optimizer,
            "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.trainer.epochs),
        }

    batch_size = cfg.data.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_epochs=cfg.trainer.epochs,
            accelerator="cpu",
            devices=1,
            gradient_clip_val=CLIP,
            log_every_n_steps=LOG_EVERY,
            logger=L.pytorch.loggers.CSVLogger(tmp),
            default_root_dir=tmp,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        start = time.perf_counter()
        trainer.fit(
            lightning_module(cfg, optimizers),
            DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(x_val, y_val), batch_size=batch_size),
        )
        elapsed = time.perf_counter() - start
    return {"step_s": clocks[-1].step_s(), "epoch_s": elapsed / cfg.trainer.epochs, "weights": None}


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def bench(repeats=5, setups=tuple(SETUPS), lightning=True) -> dict:
    import logging
    import warnings

    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(torch.get_num_threads())
    results = {}
    for setup in setups:
        candidates = {"raw": lambda s=setup: run_raw(s), "frame": lambda s=setup: run_frame(s)}
        if lightning:
            candidates["lightning"] = lambda s=setup: run_lightning(s)
        rounds = interleave(candidates, repeats=repeats)
        row = {
            "repeats": repeats,
            "bit_equal_to_raw": bool(torch.equal(rounds["frame"][0]["weights"], rounds["raw"][0]["weights"])),
        }
        for name, runs in rounds.items():
            # ratios and differences round by round (each candidate ran right after the raw loop), then the
            # median: the machine's drift over a run (a few percent here) cancels within a round
            pairs = list(zip(runs, rounds["raw"]))
            step_ratios = [r["step_s"] / raw["step_s"] for r, raw in pairs]
            row[name] = {
                "step_ms": median([r["step_s"] for r in runs]) * 1e3,
                "epoch_s": median([r["epoch_s"] for r in runs]),
                "step_ratio": median(step_ratios),
                "step_ratio_range": [round(min(step_ratios), 4), round(max(step_ratios), 4)],
                "epoch_ratio": median([r["epoch_s"] / raw["epoch_s"] for r, raw in pairs]),
                "step_overhead_us": median([r["step_s"] - raw["step_s"] for r, raw in pairs]) * 1e6,
            }
        results[setup] = row  # weights stay out: only the equality is reported
    return results


if __name__ == "__main__":
    import json
    import sys

    quick = "--quick" in sys.argv  # one round with fewer epochs: checks that the benchmark still runs
    if quick:
        SETUPS = {name: (overrides, 1) for name, (overrides, _) in SETUPS.items()}
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(json.dumps(bench(repeats=repeats), indent=2, default=str))
