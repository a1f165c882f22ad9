"""A torchvision-reference-shaped classifier, as a user would write it, against its plain-library twin.

The project (tests.training.image_project): ImageFolder `train/` and `val/` folders of PNGs, a small CNN
with BatchNorm. The recipe is torchvision's reference `train.py` cut down: train preset (random resized
crop, flip, ToImage, ToDtype, Normalize) and val preset (ToImage, ToDtype, Normalize), SGD with momentum
and no weight decay on norm layers, linear warm-up then cosine, EMA of the weights (validated), MixUp or
CutMix on each batch, label smoothing. frame runs it from one YAML experiment; `twin` runs the same recipe
with torch and torchvision only. frame's last-epoch val/accuracy must lie within the twin's range over seeds.
"""

import json
import sys
import textwrap

import pytest

from tests.conftest import metrics, run_frame
from tests.training.image_project import make_image_project

EPOCHS, WARMUP, BATCH, LR, DECAY, EMA_DECAY, SMOOTHING = 8, 2, 16, 0.05, 5e-4, 0.9, 0.1
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
TWIN_SEEDS = (0, 1, 2)
PER_CLASS, VAL_PER_CLASS = 32, 12  # 128 training and 48 validation images

EXPERIMENT = """\
# @package _global_
defaults:
  - override /model: null
  - override /loss: null
  - override /optimizer: null
  - override /lr_scheduler: warmup_cosine
  - override /data: null
  - override /evaluators: [accuracy]
  - override /logger: [jsonl]

name: recipe
project: {root}
model: {{_target_: tinycnn.TinyCNN, num_classes: 4}}
loss: {{_target_: torch.nn.CrossEntropyLoss, label_smoothing: {smoothing}}}
optimizer:
  _target_: torch.optim.SGD
  _partial_: true
  lr: {lr}
  momentum: 0.9
  weight_decay: {decay}
  norm_weight_decay: 0.0
lr_scheduler:
  milestones: [{warmup}]
data:
  dataset: {{_target_: torchvision.datasets.ImageFolder, root: {root}/data/train}}
  sample_transforms:
    - {{_target_: torchvision.transforms.v2.RandomResizedCrop, size: 32, scale: [0.7, 1.0], interpolation: bilinear}}
    - {{_target_: torchvision.transforms.v2.RandomHorizontalFlip}}
    - {{_target_: torchvision.transforms.v2.ToImage}}
    - {{_target_: torchvision.transforms.v2.ToDtype, dtype: float32, scale: true}}
    - {{_target_: torchvision.transforms.v2.Normalize, mean: {mean}, std: {std}}}
  batch_transforms:
    - _target_: torchvision.transforms.v2.RandomChoice
      transforms:
        - {{_target_: torchvision.transforms.v2.MixUp, alpha: 0.2, num_classes: 4}}
        - {{_target_: torchvision.transforms.v2.CutMix, alpha: 1.0, num_classes: 4}}
  val:
    dataset: {{_target_: torchvision.datasets.ImageFolder, root: {root}/data/val}}
    sample_transforms:
      - {{_target_: torchvision.transforms.v2.ToImage}}
      - {{_target_: torchvision.transforms.v2.ToDtype, dtype: float32, scale: true}}
      - {{_target_: torchvision.transforms.v2.Normalize, mean: {mean}, std: {std}}}
  batch_size: {batch}
trainer:
  epochs: {epochs}
  device: cpu
  monitor: val/accuracy
  monitor_mode: max
  log_every_n_steps: 5
  ema: {{decay: {ema}, warmup_steps: {warmup_steps}}}
"""

TWIN = '''
    """The twin: the same recipe with torch and torchvision only (torchvision's references/classification pieces)."""
    import sys

    import torch
    import torchvision.transforms.v2 as v2
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from torch.utils.data import DataLoader, default_collate
    from torchvision.datasets import ImageFolder

    root, seeds, epochs, warmup, batch, lr, decay, ema_decay, smoothing = sys.argv[1:]
    epochs, warmup, batch = int(epochs), int(warmup), int(batch)
    lr, decay, ema_decay, smoothing = float(lr), float(decay), float(ema_decay), float(smoothing)
    sys.path.insert(0, root)
    from tinycnn import TinyCNN


    def train(seed):
        """The last epoch's val accuracy of the EMA model."""
        torch.manual_seed(seed)
        normalize = v2.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
        train_preset = v2.Compose([v2.RandomResizedCrop(32, scale=(0.7, 1.0), interpolation=v2.InterpolationMode.BILINEAR),
                                   v2.RandomHorizontalFlip(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True), normalize])
        val_preset = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), normalize])
        train_set = ImageFolder(f"{root}/data/train", transform=train_preset)
        val_set = ImageFolder(f"{root}/data/val", transform=val_preset)
        mix = v2.RandomChoice([v2.MixUp(alpha=0.2, num_classes=4), v2.CutMix(alpha=1.0, num_classes=4)])
        train_loader = DataLoader(train_set, batch_size=batch, shuffle=True, collate_fn=lambda b: mix(*default_collate(b)))
        val_loader = DataLoader(val_set, batch_size=batch)

        model = TinyCNN(num_classes=4)
        norm_classes = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
        norm = [p for m in model.modules() if isinstance(m, norm_classes) for p in m.parameters(recurse=False)]
        other = [p for p in model.parameters() if all(p is not q for q in norm)]
        optimizer = torch.optim.SGD([{"params": other, "weight_decay": decay}, {"params": norm, "weight_decay": 0.0}],
                                    lr=lr, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs - warmup)], milestones=[warmup])
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
        steps, warmup_steps = 0, warmup * len(train_loader)
        for epoch in range(epochs):
            model.train()
            for images, targets in train_loader:
                loss = criterion(model(images), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                ema.update_parameters(model)
                if steps < warmup_steps:  # the reference keeps copying the weights during the LR warm-up
                    ema.n_averaged.fill_(0)
            scheduler.step()
            ema.eval()
            correct = 0
            with torch.no_grad():
                for images, targets in val_loader:
                    correct += int((ema(images).argmax(1) == targets).sum())
        return correct / len(val_set)


    for seed in seeds.split(","):
        print(f"seed {seed} ema acc {train(int(seed)):.4f}", flush=True)
'''


def twin_accuracies(root, seeds) -> list[float]:
    """The twin's last-epoch val accuracy for each seed (one process, seeds one after another)."""
    import subprocess

    script = root / "twin.py"
    script.write_text(textwrap.dedent(TWIN).lstrip())
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(root),
            ",".join(map(str, seeds)),
            str(EPOCHS),
            str(WARMUP),
            str(BATCH),
            str(LR),
            str(DECAY),
            str(EMA_DECAY),
            str(SMOOTHING),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
    ).stdout
    return [float(line.rsplit(" ", 1)[-1]) for line in out.strip().splitlines()]


@pytest.mark.slow
def test_a_torchvision_recipe_scores_within_its_plain_twins_range(tmp_path):
    root = make_image_project(tmp_path, per_class=PER_CLASS, val_per_class=VAL_PER_CLASS)
    steps_per_epoch = -(-4 * PER_CLASS // BATCH)
    (root / "conf" / "experiment").mkdir(parents=True)
    (root / "conf" / "experiment" / "recipe.yaml").write_text(
        EXPERIMENT.format(
            root=root,
            smoothing=SMOOTHING,
            lr=LR,
            decay=DECAY,
            warmup=WARMUP,
            mean=MEAN,
            std=STD,
            batch=BATCH,
            epochs=EPOCHS,
            ema=EMA_DECAY,
            warmup_steps=WARMUP * steps_per_epoch,
        )
    )
    run = run_frame(["train", "--config-dir", "conf", "experiment=recipe"], cwd=root, check=0, timeout=900)
    assert "read as InterpolationMode.BILINEAR" in run.stderr + run.stdout  # the string YAML can give, said once
    records = metrics(root / "outputs" / "recipe")
    validation = [r for r in records if "val/accuracy" in r]
    assert len(validation) == EPOCHS
    frame_accuracy = validation[-1]["val/accuracy"]
    run_frame(["eval", "outputs/recipe", "--checkpoint", f"epoch-{EPOCHS:04d}"], cwd=root, check=0)
    evaluated = json.loads((root / "outputs" / "recipe" / "eval" / "val.json").read_text())
    assert evaluated["weights"] == "ema"  # what validation scored, so frame eval reproduces it
    assert evaluated["metrics"]["accuracy"] == pytest.approx(frame_accuracy)
    assert evaluated["metrics"]["loss"] == pytest.approx(validation[-1]["val/loss"], rel=1e-4)
    twins = twin_accuracies(root, TWIN_SEEDS)
    print(json.dumps({"frame": frame_accuracy, "twins": twins}))
    assert min(twins) <= frame_accuracy <= max(twins), (frame_accuracy, twins)
    assert min(twins) > 0.8  # the recipe learns: four classes, chance is 0.25
