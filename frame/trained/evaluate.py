"""`frame eval`: a trained run's checkpoint scored on a data set.

`evaluate_run` rebuilds a run's model from a checkpoint and scores it with the run's validation
pipeline: `frame.training.validation.score` on every item of the data it validates on (`data.val`,
else `data.dataset`; overrides point it elsewhere, e.g. `data.val.dataset.root=./data/test`), through
the deterministic transforms, the run's inferer and the evaluators' post-processing as the loss
trains. It writes `<run_dir>/eval/<name>.json` (and `<name>.csv` per item).
"""

import csv
import io
import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from frame.core.atomic import confined, make_folder, write_file
from frame.core.errors import FrameError
from frame.training.validation import score

EVAL_DIR = "eval"


def evaluate_run(
    run_dir,
    checkpoint: str = "best",
    overrides: list[str] = (),
    name: str | None = None,
    per_item: bool = False,
    device: str = "auto",
    trust: bool = False,
    ema: bool = True,
) -> dict:
    """Score the run's checkpoint on the data it validated on (`load.run_data`: `data.val`, else the split's
    validation share of `data.dataset`; every item of a dataset an override points elsewhere); write and
    return the result.
    The weights are their moving average when the run kept one (as validation scored them) unless `ema=False`.

    Raises:
        FrameError: no such run or checkpoint, a bad override, a dataset or evaluator that fails to build.
    """
    from frame.trained.load import other_dataset, rebuild, run_data
    from frame.training.build import build_evaluators, build_inferer, build_loss, has_data, pick_device, validation_data

    run_dir = Path(run_dir)
    if name is not None:
        confined(run_dir / EVAL_DIR, name, "--name")  # before any work: eval/NAME.json stays in eval/
    model, cfg, saved = rebuild(run_dir, checkpoint, overrides, device, trust=trust, ema=ema)
    if has_data(cfg.data.get("val")) and other_dataset(overrides):
        raise FrameError(
            "this run validates on data.val, which frame eval scores: point it at other data with "
            "data.val.dataset.<key>=... (data.dataset is the training set).",
            key="data.dataset",
        )
    device = pick_device(device)  # pyright: ignore[reportAssignmentType]
    loader, dataset, scored = run_data(run_dir, cfg, device, overrides)
    labels = getattr(dataset, "labels", None)
    loss_fn = build_loss(cfg)
    start = time.perf_counter()
    metrics, rows = score(
        model,
        loader,
        build_evaluators(cfg, labels, loss_fn),
        device,
        loss_fn,
        build_evaluators(cfg, labels, loss_fn) if per_item else None,
        inferer=build_inferer(cfg),
    )
    elapsed = time.perf_counter() - start
    name = name or dataset_name(validation_data(cfg)[0])
    result = {
        "metrics": metrics,
        "items": len(loader.dataset),
        "scored": scored,
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
    out = make_folder(run_dir / EVAL_DIR)
    result["file"] = str(confined(out, name, "--name").with_name(f"{name}.json"))
    write_file(result["file"], json.dumps(result, indent=2) + "\n")
    if per_item:
        result["per_item"] = str(out / f"{name}.csv")
        write_file(result["per_item"], csv_text(rows))
    return result


def dataset_name(data) -> str:
    """What names an evaluation: the last folder of `data.dataset.root` (`./data/test` -> test), else the class."""
    root = data.dataset.get("root")
    if root:
        return Path(str(root)).name or "dataset"
    return str(data.dataset._target_).rsplit(".", 1)[-1]


def csv_text(rows: list[dict]) -> str:
    """The rows as CSV text, one column per key any row has (eval --per-item, predictions.csv)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
