"""Does `frame.load_model` give back the model training chose? Scored in a fresh interpreter on the
run's validation split, it must reproduce the figure that training logged for best.pt's epoch.
Shared by the tests of the default experiment and of examples/organs."""

import json
import subprocess
import sys

_SCRIPT = """
import json, sys, torch, frame
from frame.training.build import build_evaluators, eval_loader
from frame.training.checkpoint import load_checkpoint
from frame.data.loading import collate, split_indices
from frame.trained.load import run_config

run, key = sys.argv[1:]
model = frame.load_model(run)
assert not model.training
info = frame.load_run(run)
saved = load_checkpoint(info.best)
epoch = saved["state"]["epoch"]
logged = [r[key] for r in info.metrics if r.get("epoch") == epoch and key in r][-1]
cfg = run_config(saved)
loader, dataset = eval_loader(cfg, cfg.data, torch.device("cpu"))  # every item, deterministic transforms
_, val = split_indices(len(dataset), cfg.data.split_ratio, cfg.seed)
evaluators = build_evaluators(cfg, getattr(dataset, "labels", None))
with torch.no_grad():
    for i in val:
        x, y = collate([loader.dataset[i]])
        for evaluator in evaluators.values():
            evaluator.update(model(x), y)
again = {f"val/{k}": v for e in evaluators.values() for k, v in e.compute().items()}[key]
print(json.dumps({"logged": logged, "again": again, "checkpoints": sorted(info.checkpoints)}))
"""


def reproduce_best(run_dir, cwd, key: str) -> dict:
    """{"logged": `key` at best.pt's epoch, "again": `key` recomputed with `frame.load_model`,
    "checkpoints": the run's checkpoint names}; run with `cwd` as the working directory."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(run_dir), key], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
