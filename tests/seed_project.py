"""A seed-style user project written into a temp directory, unlike the organs example in every part.

Classification of points read from a CSV file: its own model, loss, dataset (with `LABELS`),
transforms, an evaluator named like frame's built-in `Accuracy` (the project must win) and a
metric logger. Tests build it, break one piece, and run it.
"""

import json
import textwrap
from pathlib import Path

import numpy as np

CLASSES = ["red", "green", "blue", "yellow"]

FILES = {
    "src/Models/TinyClassifier.py": """
        from torch import nn


        class TinyClassifier(nn.Module):
            def __init__(self, in_features, num_classes, hidden=16):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

            def forward(self, x):
                return self.net(x)
    """,
    "src/losses.py": """
        from torch import nn


        class SmoothedCrossEntropy(nn.Module):
            def __init__(self, smoothing=0.1):
                super().__init__()
                self.loss = nn.CrossEntropyLoss(label_smoothing=smoothing)

            def forward(self, prediction, target):
                return self.loss(prediction, target)
    """,
    "src/Datasets/Points.py": """
        import csv
        from pathlib import Path

        import torch
        from torch.utils.data import Dataset


        class Points(Dataset):
            LABELS = ("red", "green", "blue", "yellow")

            def __init__(self, root, labels=None, file="points.csv"):
                self.labels = list(labels or self.LABELS)
                with open(Path(root) / file) as rows:
                    rows = [r for r in csv.reader(rows) if r[-1] in self.labels]
                self.x = torch.tensor([[float(v) for v in r[:-1]] for r in rows])
                self.y = [self.labels.index(r[-1]) for r in rows]

            def __len__(self):
                return len(self.y)

            def __getitem__(self, i):
                return self.x[i], self.y[i]
    """,
    "src/Data/transforms.py": """
        import torch


        class Shift:
            def __init__(self, offset: float):
                self.offset = offset

            def __call__(self, x):
                return x + self.offset


        def as_long(label):
            return torch.as_tensor(label, dtype=torch.long)
    """,
    "src/Evaluators/Accuracy.py": '''
        class Accuracy:
            """Shadows frame.training.evaluators.Accuracy: reports `acc`, not `accuracy`."""

            def __init__(self, labels=None):
                self.labels = labels
                self.reset()

            def reset(self):
                self.right = self.total = 0

            def update(self, prediction, target):
                self.right += int((prediction.argmax(1) == target).sum())
                self.total += len(target)

            def compute(self):
                return {"acc": self.right / max(self.total, 1)}
    ''',
    "src/MetricLoggers/Summary.py": """
        import json
        import os
        from pathlib import Path

        from frame.tracking.base import MetricLogger


        class Summary(MetricLogger):
            def __init__(self, filename="summary.json"):
                self.filename, self.last = filename, {}

            def start(self, run_dir, config, resume_step):
                self.path = Path(run_dir) / self.filename

            def log_metrics(self, metrics, step, epoch):
                self.last.update(metrics)

            def finish(self, status):
                key = os.environ.get("WANDB_API_KEY")
                self.path.write_text(json.dumps({"status": status, "metrics": self.last,
                                                 "wandb_key_length": len(key) if key else 0}))
    """,
}

JOB = """
// A classification job in the seed's format.
{
    "name": "points",
    "resume": true,
    "model": {"name": "TinyClassifier", "in_features": 8, "num_classes": 4, /* four colours */},
    "training": {
        "epochs": 3,
        "split_ratio": 0.75,
        "batch_size": 16,
        "monitor": "val/acc",          // a trainer key beyond the seed's
        "monitor_mode": "max",
        "loss": {"name": "SmoothedCrossEntropy", "smoothing": 0.05},
        "optimizer": {"name": "SGD", "learning_rate": 0.2, "momentum": 0.9},
        "lr_scheduler": {"name": "StepLR", "step_size": 2, "gamma": 0.5},
        "dataset": {
            "root": "./data",
            "num_workers": 0,
            "labels": ["red", "green", "blue", "yellow"],
            "sample_transforms": [{"name": "Shift", "offset": 0.5}],
            "label_transforms": [{"name": "as_long"}],
        },
    },
    "evaluators": [{"name": "Accuracy"}],
    "metric_loggers": [{"name": "Summary"}],
}
"""


def make_project(root: Path, job: str = JOB, files: dict | None = None, samples: int = 256) -> Path:
    """Write the project under `root`; returns the job file. `files` replaces or adds sources."""
    for relative, text in {**FILES, **(files or {})}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (len(CLASSES), 8))
    (root / "data").mkdir(exist_ok=True)
    with open(root / "data" / "points.csv", "w") as out:
        for i in range(samples):
            c = i % len(CLASSES)
            out.write(",".join(f"{v:.4f}" for v in centres[c] + rng.normal(0, 1, 8)) + f",{CLASSES[c]}\n")
    path = root / "config" / "job.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(job)
    return path


def edit_job(path: Path, change) -> Path:
    """Rewrite a job after `change(dict)` (comments are lost; fine for tests)."""
    import json5

    job = json5.loads(path.read_text())
    change(job)
    path.write_text(json.dumps(job, indent=2))
    return path
