"""Predictions of a trained run on new data: `frame predict`.

Inputs are files (NIfTI volumes or images, a file or a folder of them) read by MONAI's LoadImage
channel-first, or, with no input given, every item of the run's validation data (as `frame eval` takes
it). Each goes through the run's deterministic sample transforms and the model, called through
the run's `inferer` as validation calls it (whole, or MONAI's SlidingWindowInferer for volumes
larger than the training crops); `roi_size` is a spelling of a SlidingWindowInferer of windows
of that size. A model whose output keeps the input's spatial shape is segmenting: its output
becomes a label map written as NIfTI by MONAI's SaveImage on the input's grid (its shape, axis
order and affine, so spacing and orientation), undoing what the transforms did to the geometry as
far as the item's MetaTensor affine records it. Any other output (classes, regression values) goes
into one `predictions.csv`.
"""

import sys
import time
from pathlib import Path

import torch

from frame.core.atomic import Outputs, make_folder, write_file
from frame.core.errors import FrameError

SUFFIXES = (".nii", ".nii.gz", ".mha", ".nrrd", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
POSTPROCESS = ("auto", "sigmoid", "argmax", "none")


def input_files(path: Path) -> list[Path]:
    """The image files at `path` (a file, or a folder's files with a known suffix, sorted).

    Raises:
        FrameError: nothing there to predict on.
    """
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))
        if files:
            return files
        raise FrameError(f"--input {path}: no image files in it (looked for {', '.join(SUFFIXES)}).")
    raise FrameError(f"--input {path}: no such file or folder.")


def predict_run(
    run_dir,
    output,
    inputs=None,
    checkpoint: str = "best",
    overrides=(),
    device: str = "auto",
    roi_size=None,
    overlap: float | None = None,
    postprocess: str | None = None,
    threshold: float | None = None,
    progress: bool = True,
    trust: bool = False,
    ema: bool = True,
) -> dict:
    """Write the predictions of the run's checkpoint on `inputs` (a path) or on its dataset into `output`.
    Settings left None come from the run's `predict.*` (after `overrides`). The weights are their moving
    average when the run kept one (`trainer.ema`) unless `ema=False`.

    Returns {"files": written files, "items": count, "time_s": seconds of reading, inference and writing}.

    Raises:
        FrameError: no such run, checkpoint or input; a file MONAI cannot read; a bad option.
    """
    from frame.trained.evaluate import csv_text
    from frame.trained.load import rebuild, run_data
    from frame.training.build import build_inferer, eval_transforms, pick_device, validation_data

    files = input_files(Path(inputs)) if inputs is not None else None
    model, cfg, _ = rebuild(run_dir, checkpoint, overrides, device, trust=trust, ema=ema)
    settings = cfg.get("predict") or {}
    roi_size = roi_size if roi_size is not None else settings.get("roi_size")
    roi_size = None if roi_size is None else [int(size) for size in roi_size]
    overlap = overlap if overlap is not None else settings.get("overlap", 0.25)
    postprocess = postprocess if postprocess is not None else settings.get("postprocess", "auto")
    threshold = threshold if threshold is not None else settings.get("threshold", 0.5)
    if postprocess not in POSTPROCESS:
        raise FrameError(f"--postprocess (predict.postprocess) {postprocess}: choose one of {', '.join(POSTPROCESS)}.")
    trained = as_trained(cfg)
    contradiction = postprocess in ("sigmoid", "argmax") and trained not in (None, postprocess)
    postprocess = (trained or "sigmoid") if postprocess == "auto" else postprocess
    if not 0 <= overlap < 1:  # pyright: ignore[reportOperatorIssue, reportOptionalOperand]
        raise FrameError(f"--overlap (predict.overlap) {overlap}: expected a number >= 0 and < 1.")
    device = pick_device(device)  # pyright: ignore[reportAssignmentType]
    inferer = sliding_window(roi_size, overlap) if roi_size is not None else build_inferer(cfg)
    if files is not None:
        transforms = eval_transforms(cfg, *validation_data(cfg))[1]  # the sample transforms validation uses
        items = ((str(path), _read(path, transforms)) for path in files)
        count, labels, names = len(files), None, [str(path) for path in files]
    else:
        loader, dataset, _ = run_data(run_dir, cfg, device, overrides)
        indices = loader.dataset.indices  # the dataset's own index names each item
        loader = torch.utils.data.DataLoader(loader.dataset, batch_size=None)  # one item at a time, in order
        items = ((f"item-{index:04d}", sample) for index, (sample, _) in zip(indices, loader, strict=True))
        count, labels = len(indices), getattr(dataset, "labels", None)
        names = [f"item-{index:04d}" for index in indices]
    output = make_folder(output)
    planned = Outputs(files or ())  # before anything is written: two inputs onto one file, an input overwritten
    for name in names:
        planned.add(map_path(output, name), name)
    planned.add(output / "predictions.csv", "the table of predictions")
    maps, rows = [], []
    start = time.perf_counter()
    for name, sample in _progress(items, count, progress):
        prediction = _infer(model, sample, device, inferer)
        if prediction.shape[1:] == sample.shape[1:] and sample.ndim >= 3:  # segmentation: a map per voxel
            if contradiction and not maps:  # said once, and only where label maps are made
                print(
                    f"frame predict: warning: label maps by {postprocess}, but the run's loss trains for {trained} "
                    f"({'a softmax over classes, channel 0 the background' if trained == 'argmax' else 'a sigmoid per channel'})"
                    f": --postprocess {trained} (or auto) reads its output as trained.",
                    file=sys.stderr,
                )
            maps.append(save_map(_label_map(prediction, postprocess, threshold), sample, name, output))
        else:
            rows.append(_row(name, prediction, labels))
    written = [*maps, *([write_file(output / "predictions.csv", csv_text(rows))] if rows else [])]
    return {
        "files": [str(p) for p in written],
        "items": count,
        "time_s": round(time.perf_counter() - start, 3),
        "postprocess": postprocess if maps else None,
    }


def as_trained(cfg) -> str | None:
    """The label maps the run's loss trained for: argmax after a softmax loss (classes, channel 0 the
    background: DiceCELoss(softmax=True), cross-entropy), sigmoid after a sigmoid one (a channel per
    label), None when the loss does not say."""
    from frame.training.build import build_loss
    from frame.training.losses import loss_activation

    return {"softmax": "argmax", "sigmoid": "sigmoid"}.get(loss_activation(build_loss(cfg)))


def _read(path: Path, transforms):
    from monai.transforms import LoadImage

    try:
        image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as error:  # MONAI raises RuntimeError/OSError/ValueError depending on the reader
        raise FrameError(f"could not read {path}: {str(error).splitlines()[0]}") from error
    for transform in transforms:
        try:
            image = transform(image)
        except Exception as error:  # a transform that needs what the run's dataset gives its items
            raise FrameError(
                f"the run's transform {type(transform).__name__} fails on {path} ({type(error).__name__}: "
                f"{error}); it may need what the run's dataset adds to its items. Predict on a dataset "
                f"instead: no --input, and data.dataset.root=<folder> as the dataset expects it."
            ) from None
    return image


def sliding_window(roi_size, overlap: float):
    """`predict.roi_size` (`--roi-size`): MONAI's SlidingWindowInferer in windows of that size."""
    from monai.inferers import SlidingWindowInferer

    return SlidingWindowInferer(roi_size=roi_size, sw_batch_size=1, overlap=overlap)


@torch.no_grad()
def _infer(model, sample, device, inferer):
    from frame.training.validation import infer

    batch = torch.as_tensor(sample).as_subclass(torch.Tensor)[None].float().to(device)  # no MetaTensor cost per op
    roi_size = getattr(inferer, "roi_size", None)
    if roi_size is not None and len(roi_size) != batch.ndim - 2:
        raise FrameError(
            f"the inferer's roi_size (predict.roi_size, --roi-size) {','.join(map(str, roi_size))} has "
            f"{len(roi_size)} sizes; the input has {batch.ndim - 2} spatial dimensions {tuple(batch.shape[2:])}."
        )
    return infer(model, batch, inferer)[0].float().cpu()


def _label_map(prediction, postprocess: str, threshold: float):
    """(1, *spatial): sigmoid: 1 + the most probable channel above `threshold`, else 0 (multi-label);
    argmax: the most probable channel (softmax classes, 0 = background); none: the raw channels."""
    if postprocess == "none":
        return prediction
    if postprocess == "argmax":
        return prediction.argmax(0, keepdim=True).to(torch.uint8)
    probabilities = torch.sigmoid(prediction)
    best, index = probabilities.max(0, keepdim=True)
    return torch.where(best > threshold, index + 1, 0).to(torch.uint8)


def save_map(label_map, sample, name: str, output: Path) -> Path:
    """NIfTI through MONAI's NibabelWriter (SaveImage's writer), on the input's own grid when the sample is
    a MONAI MetaTensor; written through frame's one writer (`frame.core.atomic.write_file`).

    The sample's affine is where its voxels are after the run's transforms (a transpose, a crop);
    its `original_affine` and `spatial_shape` are those of the file it was read from (LoadImage
    records them). The writer resamples the map from the one onto the other: a permutation and a
    shift only move voxels (nearest neighbour, zeros outside a crop), so the map has the input's
    axes, shape and affine and overlays it in any viewer. A plain tensor's map gets the identity.
    """
    import numpy as np
    from monai.data import MetaTensor, NibabelWriter

    meta = dict(sample.meta) if isinstance(sample, MetaTensor) else {}
    meta["affine"] = sample.affine if isinstance(sample, MetaTensor) else torch.eye(4)
    meta["filename_or_obj"] = name
    labels = label_map.dtype == torch.uint8
    writer = NibabelWriter(output_dtype=np.uint8 if labels else np.float32)
    writer.set_data_array(label_map, channel_dim=0, squeeze_end_dims=True)
    writer.set_metadata(
        meta, resample=True, mode="nearest" if labels else "bilinear", padding_mode="zeros", dtype=np.float64
    )
    return write_file(map_path(output, name), lambda tmp: writer.write(str(tmp), verbose=False))


def map_path(output: Path, name: str) -> Path:
    """Where the label map of the input (or dataset item) `name` goes: `<stem>_pred.nii.gz`."""
    return output / f"{_stem(name)}_pred.nii.gz"


def _stem(name: str) -> str:
    base = Path(name).name
    for suffix in SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _row(name: str, prediction, labels) -> dict:
    values = prediction.flatten()
    if values.numel() == 1:  # regression
        return {"item": name, "prediction": float(values[0])}
    index = int(values.argmax())
    row = {"item": name, "prediction": labels[index] if labels and index < len(labels) else index}
    row.update({f"score/{labels[i] if labels else i}": float(v) for i, v in enumerate(values.softmax(0))})
    return row


def _progress(items, count: int, show: bool):
    if not show:
        yield from items
        return
    from rich.progress import track

    yield from track(items, total=count, description="predicting", transient=True)
