"""Small jobs at raw speed: the per-epoch cost of a whole `frame run` process on a tiny tabular job.

The job is the seed-style points project of the tests (`tests/seed_project.py`: an 8-feature CSV,
a two-layer MLP, SGD with momentum, StepLR, accuracy), about 6 ms an epoch of plain PyTorch. Three
candidates, each a whole process run for E and for 2E epochs:

    plain      this file with --plain: the same job by hand (DataLoader, validation and accuracy
               each epoch, torch.save of the model and optimizer to last.pt each epoch)
    frame      `frame run config/job.json trainer.epochs=N` (its default loggers: metrics.jsonl,
               console), from a fresh output directory
    lightning  this file with --lightning: a LightningModule on the same data (default checkpointing,
               CSVLogger, no progress bar)

Two jobs (--case): `tabular`, 400 rows and no transforms; `items`, the seed job as its users write it,
with its project transforms (`Shift` on the sample, `as_long` on the label: frame cannot tell whether
they draw, so every item runs under its own seeds) on 1024 rows, 768 small items an epoch, where the
per-item cost of the dataset wrapper shows. The plain script and Lightning apply the same transforms
in their Dataset's `__getitem__`.

A fourth candidate, `frame_interval`, is frame with `trainer.checkpoint_every_n_minutes=5
trainer.checkpoint_every_n_epochs=0`: last.pt on a time interval, not after every epoch.

The per-epoch cost of a candidate is (T(2E) - T(E)) / E: start-up and imports cancel. T is measured
as wall time and as the process's CPU time (user + system, from `os.wait4`), which a loaded machine
inflates less. Rounds are
interleaved (plain, frame, lightning, plain, ...) and each round's ratio to plain is taken before
the median, so a shared machine's drift hits all three alike. All three run with OMP_NUM_THREADS=1:
a tiny MLP gains nothing from more threads, and spinning threads on a busy machine would drown the
differences.

    python scripts/bench/small_job.py [ROUNDS] [--epochs E] [--no-lightning] [--case tabular|items]
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
JOB = {
    "name": "points",
    "resume": True,
    "model": {"name": "TinyClassifier", "in_features": 8, "num_classes": 4},
    "training": {
        "epochs": 1,  # set per run on the command line
        "split_ratio": 0.75,
        "batch_size": 16,
        "monitor": "val/acc",
        "monitor_mode": "max",
        "loss": {"name": "SmoothedCrossEntropy", "smoothing": 0.05},
        "optimizer": {"name": "SGD", "learning_rate": 0.2, "momentum": 0.9},
        "lr_scheduler": {"name": "StepLR", "step_size": 20, "gamma": 0.5},
        "dataset": {"root": "./data", "num_workers": 0},  # no transforms: no per-item seeding
    },
    "evaluators": [{"name": "Accuracy"}],
}
CASES = {"tabular": 400, "items": 1024}  # rows
# frame_interval: last.pt every 5 minutes instead of after every epoch, no epoch-NNNN.pt (a stop still writes one)
INTERVAL = ["trainer.checkpoint_every_n_minutes=5", "trainer.checkpoint_every_n_epochs=0"]
TRANSFORMS = {"sample_transforms": [{"name": "Shift", "offset": 0.5}], "label_transforms": [{"name": "as_long"}]}


def make(root: Path, case: str) -> Path:
    """The project (sources, points.csv, config/job.json) under `root`; returns the job file."""
    sys.path.insert(0, str(REPO))
    from tests.seed_project import make_project

    job = json.loads(json.dumps(JOB))
    if case == "items":
        job["training"]["dataset"].update(TRANSFORMS)
    return make_project(root, job=json.dumps(job), samples=CASES[case])


def _data(root: Path, case: str):
    """The project's (train, validation) datasets, split in the same proportion as frame splits them;
    with the project's transforms applied per item in the `items` case."""
    sys.path.insert(0, str(root / "src"))
    import torch
    from Datasets.Points import Points
    from torch.utils.data import Dataset, TensorDataset

    points = Points(root / "data")
    x, y = points.x, torch.tensor(points.y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(len(y) * JOB["training"]["split_ratio"])
    parts = (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])
    if case == "tabular":
        return tuple(TensorDataset(*part) for part in parts)
    from Data.transforms import Shift, as_long

    class Transformed(Dataset):
        def __init__(self, x, y):
            self.x, self.y, self.shift = x, y.tolist(), Shift(0.5)

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.shift(self.x[i]), as_long(self.y[i])

    return tuple(Transformed(*part) for part in parts)


def plain(root: Path, epochs: int, case: str) -> None:
    """The job as a plain PyTorch script."""
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    train_set, val_set = _data(root, case)
    from losses import SmoothedCrossEntropy
    from Models.TinyClassifier import TinyClassifier

    training = JOB["training"]
    model, loss_fn = TinyClassifier(8, 4), SmoothedCrossEntropy(0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5)
    train = DataLoader(train_set, batch_size=training["batch_size"], shuffle=True)
    val = DataLoader(val_set, batch_size=training["batch_size"])
    out = root / "plain"
    out.mkdir(exist_ok=True)
    for epoch in range(epochs):
        model.train()
        for x, y in train:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        right = total = 0
        with torch.no_grad():
            for x, y in val:
                prediction = model(x)
                total += float(loss_fn(prediction, y))
                right += int((prediction.argmax(1) == y).sum())
        scheduler.step()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, out / "last.pt")
        print(f"epoch {epoch + 1} val/loss={total / len(val):.4g} val/acc={right / len(val_set):.4g}")


def lightning(root: Path, epochs: int, case: str) -> None:
    """The job with Lightning's Trainer."""
    import logging
    import warnings

    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    train_set, val_set = _data(root, case)
    from losses import SmoothedCrossEntropy
    from Models.TinyClassifier import TinyClassifier

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.loss_fn = TinyClassifier(8, 4), SmoothedCrossEntropy(0.05)

        def training_step(self, batch, index):
            loss = self.loss_fn(self.model(batch[0]), batch[1])
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch, index):
            prediction = self.model(batch[0])
            self.log("val/loss", self.loss_fn(prediction, batch[1]))
            self.log("val/acc", (prediction.argmax(1) == batch[1]).float().mean())

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 20, 0.5)}

    batch_size = JOB["training"]["batch_size"]
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.CSVLogger(root / "lightning"),
        default_root_dir=root / "lightning",
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(
        Module(), DataLoader(train_set, batch_size=batch_size, shuffle=True), DataLoader(val_set, batch_size=batch_size)
    )


def _commands(root: Path, job: Path, epochs: int, case: str) -> dict:
    """name -> (argv, what to remove first so the run starts fresh)."""
    bin_dir = Path(sys.executable).parent
    return {
        "plain": ([sys.executable, str(HERE), "--plain", str(root), str(epochs), case], root / "plain"),
        "frame": ([str(bin_dir / "frame"), "run", str(job), f"trainer.epochs={epochs}"], root / "outputs"),
        "frame_interval": (
            [str(bin_dir / "frame"), "run", str(job), f"trainer.epochs={epochs}", *INTERVAL],
            root / "outputs",
        ),
        "lightning": ([sys.executable, str(HERE), "--lightning", str(root), str(epochs), case], root / "lightning"),
    }


def bench(rounds: int = 5, epochs: int = 60, with_lightning: bool = True, case: str = "tabular") -> dict:
    from common import interleave, median, time_command_cpu

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        job = make(root, case)
        names = ["plain", "frame", "frame_interval"] + (["lightning"] if with_lightning else [])

        def per_epoch(name):
            def run():
                times = []
                for count in (epochs, 2 * epochs):
                    argv, output = _commands(root, job, count, case)[name]
                    shutil.rmtree(output, ignore_errors=True)
                    times.append(time_command_cpu(argv, env={"OMP_NUM_THREADS": "1"}, cwd=root))
                (wall, cpu), (wall2, cpu2) = times
                return {"epoch_s": (wall2 - wall) / epochs, "epoch_cpu_s": (cpu2 - cpu) / epochs, "process_s": wall}

            return run

        measured = interleave({name: per_epoch(name) for name in names}, repeats=rounds)
    result = {"case": case, "rounds": rounds, "epochs": [epochs, 2 * epochs], "rows": CASES[case]}
    for name in names:
        ratios = [r["epoch_s"] / p["epoch_s"] for r, p in zip(measured[name], measured["plain"])]
        cpu_ratios = [r["epoch_cpu_s"] / p["epoch_cpu_s"] for r, p in zip(measured[name], measured["plain"])]
        result[name] = {
            "epoch_ms": round(median([r["epoch_s"] for r in measured[name]]) * 1e3, 3),
            "epoch_cpu_ms": round(median([r["epoch_cpu_s"] for r in measured[name]]) * 1e3, 3),
            "process_s_at_E": round(median([r["process_s"] for r in measured[name]]), 3),
            "ratio_to_plain": round(median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "cpu_ratio_to_plain": round(median(cpu_ratios), 3),
            "cpu_ratio_range": [round(min(cpu_ratios), 3), round(max(cpu_ratios), 3)],
        }
    return result


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] in ("--plain", "--lightning"):
        (plain if sys.argv[1] == "--plain" else lightning)(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60, help="E: each candidate runs E and 2E epochs")
    parser.add_argument("--no-lightning", action="store_true")
    parser.add_argument("--case", choices=sorted(CASES), default="tabular")
    args = parser.parse_args()
    print(json.dumps(bench(args.rounds, args.epochs, not args.no_lightning, args.case), indent=2))


if __name__ == "__main__":
    main()
