"""`frame export`: a run's weights in a format other programs read, without frame.

`model.safetensors` holds the checkpoint's model weights (safetensors: tensors only, nothing
runs when it is read); `model.yaml` beside it is the resolved model config (`_target_` plus the
constructor's arguments), so a script rebuilds the model with importlib and loads the weights
(docs/reference/evaluation.md, "After training").
"""

from pathlib import Path

from omegaconf import OmegaConf

from frame.compat.extras import pip_extra
from frame.core.atomic import make_folder, write_file
from frame.core.errors import FrameError

FORMATS = ("safetensors",)


def export_run(
    run_dir, output=None, checkpoint: str = "best", fmt: str = "safetensors", trust: bool = False
) -> list[Path]:
    """Write `model.safetensors` and `model.yaml` into `output` (default `<run_dir>/export/`); returns the files.

    Raises:
        FrameError: an unknown format, no such run or checkpoint, or safetensors not installed.
    """
    if fmt not in FORMATS:
        raise FrameError(f"--format {fmt}: frame exports {', '.join(FORMATS)}.")
    try:
        from safetensors.torch import save
    except ImportError as error:
        raise FrameError(f"frame export needs safetensors: {pip_extra('export')} (or safetensors).") from error
    from frame.trained.load import rebuild

    model, cfg, saved = rebuild(run_dir, checkpoint, device="cpu", trust=trust)
    output = make_folder(Path(output) if output is not None else Path(run_dir) / "export")
    weights, config = output / "model.safetensors", output / "model.yaml"
    # contiguous copies: safetensors refuses views and tensors that share memory (tied weights)
    tensors = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()}
    metadata = {
        "checkpoint": saved["_path"],
        "epoch": str(saved["state"]["epoch"]),
        "frame_version": str(saved.get("frame_version")),
    }
    write_file(
        weights, save(tensors, metadata=metadata)
    )  # bytes: the writer owns the file (a full disk is its WriteError)
    header = f"# {saved['_path']} (epoch {saved['state']['epoch']}); project: {cfg.get('project')}\n"
    write_file(config, header + OmegaConf.to_yaml(cfg.model, resolve=True))
    return [weights, config]
