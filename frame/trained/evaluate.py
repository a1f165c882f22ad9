"""`frame eval`: a trained run's checkpoint scored on a data set.

`evaluate_run` rebuilds a run's model from a checkpoint, scores it with the validation's own
`frame.training.validation.score` on every item of the run's dataset (with overrides, e.g. `data.dataset.root=./data/test`) with the deterministic transforms only,
and writes `<run_dir>/eval/<name>.json` (and `<name>.csv` per item).
"""

import csv
import io
import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from frame.core.atomic import replace_text
from frame.training.validation import score

EVAL_DIR = "eval"


def evaluate_run(run_dir, checkpoint: str = "best", overrides: list[str] = (), name: str | None = None,
                 per_item: bool = False, device: str = "auto", ema: bool = True) -> dict:
    """Score the run's checkpoint on every item of its (overridden) dataset; write and return the result.
    The weights are their moving average when the run kept one (as validation scored them) unless `ema=False`.

    Raises:
        FrameError: no such run or checkpoint, a bad override, a dataset or evaluator that fails to build.
    """
    from frame.training.build import build_evaluators, build_loss, pick_device
    from frame.trained.load import rebuild, run_data

    run_dir = Path(run_dir)
    model, cfg, saved = rebuild(run_dir, checkpoint, overrides, device, ema)
    device = pick_device(device)
    loader, dataset = run_data(run_dir, cfg, device)
    labels = getattr(dataset, "labels", None)
    start = time.perf_counter()
    metrics, rows = score(model, loader, build_evaluators(cfg, labels), device, build_loss(cfg),
                          build_evaluators(cfg, labels) if per_item else None)
    elapsed = time.perf_counter() - start
    name = name or dataset_name(cfg.data)
    result = {
        "metrics": metrics,
        "items": len(loader.dataset),
        "checkpoint": saved["_path"],
        "epoch": saved["state"]["epoch"],
        "step": saved["state"]["step"],
        "weights": "ema" if ema and saved.get("ema") is not None else "trained",
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "evaluators": OmegaConf.to_container(cfg.evaluators, resolve=True),
        "overrides": list(overrides),
        "device": str(device),
        "time_s": round(elapsed, 3),
        "time_per_item_s": round(elapsed / max(len(loader.dataset), 1), 4),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = run_dir / EVAL_DIR
    out.mkdir(exist_ok=True)
    result["file"] = str(out / f"{name}.json")
    replace_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
    if per_item:
        result["per_item"] = str(out / f"{name}.csv")
        replace_text(out / f"{name}.csv", _csv(rows))
    return result


def dataset_name(data) -> str:
    """What names an evaluation: the last folder of `data.dataset.root` (`./data/test` -> test), else the class."""
    root = data.dataset.get("root")
    if root:
        return Path(str(root)).name or "dataset"
    return str(data.dataset._target_).rsplit(".", 1)[-1]


def _csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
