"""The recipe's building blocks (torchvision's reference train.py): chained schedulers, EMA of the weights,
batch transforms (MixUp, CutMix), parameter groups, and torchvision transform arguments YAML cannot spell.

Most run on the image project of `tests.training.image_project` (ImageFolder of PNGs, a CNN with BatchNorm).
"""

import os
import signal

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from frame.core.errors import FrameError
from frame.training.build import build_job
from frame.training.checkpoint import load_checkpoint
from frame.training.loop import fit
from tests.conftest import metrics
from tests.training.image_project import make_image_project

NORMALIZE = "{_target_: torchvision.transforms.v2.Normalize, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}"
TO_TENSOR = (
    "{_target_: torchvision.transforms.v2.ToImage}",
    "{_target_: torchvision.transforms.v2.ToDtype, dtype: float32, scale: true}",
)
MIX = (
    "{_target_: torchvision.transforms.v2.RandomChoice, transforms: ["
    "{_target_: torchvision.transforms.v2.MixUp, alpha: 0.2, num_classes: 4},"
    "{_target_: torchvision.transforms.v2.CutMix, alpha: 1.0, num_classes: 4}]}"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_image_project(tmp_path_factory.mktemp("images"), per_class=8, val_per_class=2)


def _images(compose, project, *overrides, transforms=None):
    """The image project: ImageFolder, TinyCNN, SGD, accuracy; 2 epochs of 3 batches (model and dataset
    replaced in the composed config, as an experiment with `override /model: null` would)."""
    transforms = transforms or ["{_target_: torchvision.transforms.v2.RandomHorizontalFlip}", *TO_TENSOR, NORMALIZE]
    cfg = compose(
        [
            "experiment=classify",
            f"+project={project}",
            f"data.sample_transforms=[{', '.join(transforms)}]",
            "data.batch_size=8",
            "data.split_ratio=0.75",
            "optimizer=sgd",
            "optimizer.lr=0.05",
            "trainer.epochs=2",
            "trainer.log_every_n_steps=1",
            "trainer.device=cpu",
            "logger=[jsonl]",
            *overrides,
        ]
    )
    with open_dict(cfg):
        cfg.model = {"_target_": "tinycnn.TinyCNN", "num_classes": 4}
        cfg.data.dataset = {"_target_": "torchvision.datasets.ImageFolder", "root": f"{project}/data/train"}
    return cfg


# --- chained schedulers ------------------------------------------------------------------------------


def test_warmup_then_cosine_follows_torchs_own_sequential_lr(compose, tmp_path):
    """conf/lr_scheduler/warmup_cosine: each inner scheduler gets the optimizer; the rates per epoch are
    those of torch's SequentialLR built by hand over the same optimizer."""
    cfg = compose(
        [
            "experiment=classify",
            "data.dataset.num_samples=64",
            "data.batch_size=16",
            "trainer.epochs=6",
            "lr_scheduler=warmup_cosine",
            "lr_scheduler.milestones=[2]",
            "logger=[jsonl]",
        ]
    )
    job = build_job(cfg, tmp_path)
    assert type(job.scheduler).__name__ == "SequentialLR"
    assert [type(s).__name__ for s in job.scheduler._schedulers] == ["LinearLR", "CosineAnnealingLR"]
    assert job.scheduler._schedulers[1].T_max == 4  # the epochs after the warm-up: ${sub:...}
    fit(job)
    logged = [r["train/lr"] for r in metrics(tmp_path) if "train/lr" in r]
    last_per_epoch = {r["epoch"]: r["train/lr"] for r in metrics(tmp_path) if "train/lr" in r}

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    expected = torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=2),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4),
        ],
        milestones=[2],
    )
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step(), expected.step()
    assert list(last_per_epoch.values()) == pytest.approx(rates)
    assert logged[0] == pytest.approx(cfg.optimizer.lr * 0.01)


def test_a_chained_scheduler_steps_every_inner_one(compose, tmp_path):
    cfg = compose(
        [
            "experiment=classify",
            "data.dataset.num_samples=64",
            "data.batch_size=16",
            "trainer.epochs=2",
            "logger=[jsonl]",
            "lr_scheduler={_target_: torch.optim.lr_scheduler.ChainedScheduler, _partial_: true,"
            " schedulers: [{_target_: torch.optim.lr_scheduler.ConstantLR, _partial_: true, factor: 0.5, total_iters: 1},"
            " {_target_: torch.optim.lr_scheduler.ExponentialLR, _partial_: true, gamma: 0.9}]}",
        ]
    )
    job = build_job(cfg, tmp_path)
    fit(job)
    assert job.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr * 0.9**2)


def test_milestones_that_do_not_fit_the_schedulers_are_exit_2(compose, tmp_path):
    cfg = compose(["experiment=classify", "lr_scheduler=warmup_cosine", "lr_scheduler.milestones=[2,4]"])
    with pytest.raises(
        FrameError, match=r"could not build lr_scheduler \(torch.optim.lr_scheduler.SequentialLR\): .*milestones"
    ):
        build_job(cfg, tmp_path)


# --- parameter groups --------------------------------------------------------------------------------


def test_norm_and_bias_weight_decay_and_a_backbone_learning_rate(compose, project, tmp_path):
    cfg = _images(
        compose,
        project,
        "+optimizer.weight_decay=0.01",
        "+optimizer.norm_weight_decay=0.0",
        "+optimizer.bias_weight_decay=0.001",
        "+optimizer.param_groups=[{params: backbone, lr: 0.001}]",
    )
    job = build_job(cfg, tmp_path)
    model, groups = job.model, job.optimizer.param_groups
    group_of = {id(p): group for group in groups for p in group["params"]}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            group = group_of[id(p)]
            decay = 0.001 if pname == "bias" else 0.0 if isinstance(module, torch.nn.BatchNorm2d) else 0.01
            assert group["weight_decay"] == decay, f"{name}.{pname}"
            assert group["lr"] == (0.001 if name.startswith("backbone") else 0.05), f"{name}.{pname}"
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert groups[0]["lr"] == 0.05 and groups[0]["weight_decay"] == 0.01  # the rest first: train/lr is its rate
    fit(job)
    assert metrics(tmp_path)[0]["train/lr"] == 0.05


def test_a_wrong_module_name_or_group_option_is_exit_2_with_a_did_you_mean(compose, project, tmp_path):
    with pytest.raises(
        FrameError,
        match=r"optimizer\.param_groups\[0\]\.params=backbon: TinyCNN has no sub-module "
        r"'backbon'\. Did you mean 'backbone'\? Its top-level sub-modules: backbone, head",
    ):
        build_job(_images(compose, project, "+optimizer.param_groups=[{params: backbon, lr: 0.001}]"), tmp_path)
    with pytest.raises(
        FrameError, match=r"optimizer\.param_groups\[0\]\.lrr: SGD has no option 'lrr'\. Did you mean 'lr'\?"
    ):
        build_job(_images(compose, project, "+optimizer.param_groups=[{params: head, lrr: 0.001}]"), tmp_path)


def test_frame_check_takes_the_group_keys_as_frames_own(tmp_path):
    from frame.config.check import check_config

    cfg = OmegaConf.create(
        {
            "model": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2},
            "loss": {"_target_": "torch.nn.CrossEntropyLoss"},
            "optimizer": {
                "_target_": "torch.optim.SGD",
                "_partial_": True,
                "lr": 0.1,
                "norm_weight_decay": 0.0,
                "bias_weight_decay": 0.0,
                "param_groups": [{"params": "x", "lr": 0.1}],
            },
            "lr_scheduler": None,
            "data": {"dataset": {"_target_": "torch.utils.data.TensorDataset"}},
            "evaluators": {},
            "logger": {},
            "trainer": {"monitor": "val/loss", "monitor_mode": "min"},
        }
    )
    checked = check_config(cfg)
    assert "optimizer" in [c.key for c in checked]


# --- EMA ---------------------------------------------------------------------------------------------


def test_ema_is_the_average_of_every_step_validated_checkpointed_and_loaded(compose, project, tmp_path):
    """EMA with decay d over the weights after each optimizer step (warm-up: copies for the first 2), every
    buffer averaged too; val/ scores the average, val_raw/ the weights; frame.load_model gives the average."""
    import frame

    cfg = _images(compose, project, "trainer.ema.decay=0.8", "trainer.ema.warmup_steps=2", "trainer.ema.validate=both")
    job = build_job(cfg, tmp_path)
    expected, steps = {}, []

    def after_step(optimizer, args, kwargs):  # torch's hook, after each optimizer.step()
        steps.append(1)
        for name, value in job.model.state_dict().items():
            value = value.detach().clone()
            warming = len(steps) <= 2  # warmup_steps=2: copies, then averages
            expected[name] = value if warming or not value.is_floating_point() else 0.8 * expected[name] + 0.2 * value

    job.optimizer.register_step_post_hook(after_step)
    fit(job)
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["ema"]["n_averaged"] == len(steps) - 1  # averaged since the copy of step 2
    for name, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(saved["ema"]["weights"][name], value, msg=name)
    assert not torch.equal(saved["ema"]["weights"]["head.weight"], saved["model"]["head.weight"])
    records = [r for r in metrics(tmp_path) if "val/accuracy" in r]
    assert {"val/accuracy", "val/loss", "val_raw/accuracy", "val_raw/loss"} <= set(records[-1])

    from frame.training.validation import score

    last_val = records[-1]
    ema_model = frame.load_model(tmp_path, "last")
    scored, _ = score(ema_model, job.val_loader, job.evaluators, job.device, job.loss_fn)
    assert scored["loss"] == pytest.approx(last_val["val/loss"], rel=1e-5)
    raw, _ = score(
        frame.load_model(tmp_path, "last", ema=False), job.val_loader, job.evaluators, job.device, job.loss_fn
    )
    assert raw["loss"] == pytest.approx(last_val["val_raw/loss"], rel=1e-5) and raw["loss"] != scored["loss"]
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["state"]["best"] == max(r["val/accuracy"] for r in records)  # picked on the average's metric

    from frame.trained.evaluate import evaluate_run

    averaged = evaluate_run(tmp_path, "last", device="cpu")  # frame eval: the average unless --raw-weights
    trained = evaluate_run(tmp_path, "last", name="raw", device="cpu", ema=False)
    assert (averaged["weights"], trained["weights"]) == ("ema", "trained")
    assert averaged["metrics"]["loss"] != trained["metrics"]["loss"]


def test_ema_switched_on_at_a_resume_starts_from_the_resumed_weights(compose, project, tmp_path, caplog):
    fit(build_job(_images(compose, project, "trainer.epochs=1"), tmp_path))
    job = build_job(_images(compose, project, "trainer.ema.decay=0.5"), tmp_path)
    resumed, before_first_step = job.resume_state["model"], {}

    def snapshot(optimizer, args, kwargs):
        if not before_first_step:
            before_first_step.update({k: v.clone() for k, v in job.ema.model.state_dict().items()})

    job.optimizer.register_step_pre_hook(snapshot)
    with caplog.at_level("WARNING", logger="frame"):
        fit(job)
    assert "has no EMA of the weights: trainer.ema starts from the resumed ones" in caplog.text
    for name, value in resumed.items():
        torch.testing.assert_close(before_first_step[name], value, msg=name)


def test_ema_settings_out_of_range_are_refused(compose):
    from frame.config.validate import validate

    with pytest.raises(FrameError, match=r"trainer\.ema\.decay.*strictly between 0 and 1"):
        validate(compose(["trainer.ema.decay=1.5"]))


# --- batch transforms --------------------------------------------------------------------------------


def test_mixup_cutmix_train_on_soft_targets_validation_on_class_indices(compose, project, tmp_path):
    cfg = _images(compose, project, f"data.batch_transforms=[{MIX}]", "+loss.label_smoothing=0.1")
    job = build_job(cfg, tmp_path)
    seen = {True: [], False: []}
    loss_fn = job.loss_fn

    def recording(prediction, target):
        seen[torch.is_grad_enabled()].append(target)
        return loss_fn(prediction, target)

    job.loss_fn = recording
    fit(job)
    training, validation = seen[True], seen[False]
    assert all(t.dtype == torch.float32 and t.shape[1:] == (4,) for t in training)
    assert any((t.max(dim=1).values < 1).any() for t in training)  # mixed, not one-hot
    assert torch.allclose(torch.cat(training).sum(dim=1), torch.ones(len(torch.cat(training))))
    assert all(t.dtype == torch.int64 and t.dim() == 1 for t in validation)


def test_batch_transforms_are_seeded_per_batch_and_touch_no_other_random_stream():
    import torchvision.transforms.v2 as v2

    from frame.training.batch_transforms import BatchTransforms

    mix = BatchTransforms(
        [v2.RandomChoice([v2.MixUp(alpha=1.0, num_classes=4), v2.CutMix(alpha=1.0, num_classes=4)])], seed=3
    )
    images, labels = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    before = torch.get_rng_state()
    first = mix(images, labels, epoch=1, batch=2)
    assert torch.equal(torch.get_rng_state(), before)
    again = mix(images, labels, epoch=1, batch=2)
    other = mix(images, labels, epoch=1, batch=3)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_a_batch_transform_that_fails_on_the_batch_is_exit_2_naming_it(compose, tmp_path):
    mixup = "{_target_: torchvision.transforms.v2.MixUp, num_classes: 4}"
    cfg = compose(["experiment=classify", "data.dataset.num_samples=32", f"data.batch_transforms=[{mixup}]"])
    with pytest.raises(
        FrameError,
        match=r"data\.batch_transforms\[0\] \(MixUp\) fails on the training batch "
        r"\(sample \[\d+, 16\] float32, target \[\d+\] int64\)",
    ):
        fit(build_job(cfg, tmp_path))


# --- torchvision arguments YAML cannot spell ---------------------------------------------------------


def test_dtype_and_interpolation_strings_become_the_objects_they_name(compose, project, tmp_path, caplog):
    resize = (
        "{_target_: torchvision.transforms.v2.RandomResizedCrop, size: 32, scale: [0.6, 1.0], interpolation: BILINEAR}"
    )
    cfg = _images(compose, project, transforms=[resize, TO_TENSOR[0], TO_TENSOR[1].replace("float32", "torch.float32")])
    with caplog.at_level("INFO", logger="frame"):
        job = build_job(cfg, tmp_path)
    from torchvision.transforms import InterpolationMode

    crop, _, to_dtype = job.train_loader.dataset._random_sample
    assert crop.interpolation is InterpolationMode.BILINEAR and to_dtype.dtype is torch.float32
    assert (
        "data.sample_transforms[0].interpolation: the string 'BILINEAR' read as InterpolationMode.BILINEAR"
        in caplog.text
    )
    fit(job)
    assert cfg.data.sample_transforms[0].interpolation == "BILINEAR"  # the job's config is left as written


def test_a_string_naming_nothing_is_exit_2_naming_the_transform(compose, project, tmp_path):
    resize = "{_target_: torchvision.transforms.v2.Resize, size: 32, interpolation: bilinar}"
    with pytest.raises(
        FrameError,
        match=r"data\.sample_transforms\[0\]\.interpolation='bilinar' is not an "
        r"InterpolationMode\. Did you mean 'bilinear'\?",
    ):
        build_job(_images(compose, project, transforms=[resize, *TO_TENSOR]), tmp_path)
    with pytest.raises(
        FrameError,
        match=r"data\.sample_transforms\[1\]\.dtype='float23' names no torch dtype\. "
        r"Did you mean 'float32'\?",
    ):
        build_job(
            _images(compose, project, transforms=[TO_TENSOR[0], TO_TENSOR[1].replace("float32", "float23")]), tmp_path
        )


def test_a_pipeline_that_never_makes_a_tensor_is_exit_2_at_the_first_batch(compose, project, tmp_path):
    resize = "{_target_: torchvision.transforms.v2.Resize, size: 32}"
    job = build_job(_images(compose, project, transforms=[resize]), tmp_path)
    with pytest.raises(
        FrameError,
        match=r"the sample of an item is a PIL\.Image\.Image after its transforms \(the last "
        r"of data\.sample_transforms is Resize\); a batch needs tensors",
    ):
        fit(job)


# --- all of them, resumed exactly ---------------------------------------------------------------------


def test_a_stopped_recipe_run_resumes_exactly(compose, project, tmp_path):
    """warm-up + cosine stepping per step, EMA, MixUp/CutMix, norm weight decay and a backbone group: stopped by
    SIGTERM mid-epoch 2, resumed, it ends bit for bit as the run that was never stopped."""
    from tests.training.test_resume import _assert_equal, _records

    cfg = _images(
        compose,
        project,
        "trainer.epochs=3",
        "lr_scheduler=warmup_cosine",
        "lr_scheduler.milestones=[3]",
        "+lr_scheduler.interval=step",
        "lr_scheduler.schedulers.1.T_max=6",
        "trainer.ema.decay=0.9",
        "trainer.ema.every_n_steps=2",
        f"data.batch_transforms=[{MIX}]",
        "+optimizer.norm_weight_decay=0",
        "+optimizer.param_groups=[{params: backbone, lr: 0.01}]",
        "trainer.deterministic=true",
    )
    (tmp_path / "reference").mkdir(), (tmp_path / "run").mkdir()
    fit(build_job(cfg, tmp_path / "reference"))

    job = build_job(cfg, tmp_path / "run")
    calls, loss_fn = [], job.loss_fn

    def loss_then_signal(prediction, target):  # 1-2: the check before epoch 1; 3-5 train epoch 1, 6 validates it
        calls.append(1)
        if len(calls) == 8:  # the second batch of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return loss_fn(prediction, target)

    job.loss_fn = loss_then_signal
    with pytest.raises(SystemExit):
        fit(job)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]["batch_in_epoch"] == 2
    fit(build_job(cfg, tmp_path / "run"))
    assert _records(tmp_path / "run") == _records(tmp_path / "reference")
    for name in ("last.pt", "best.pt"):
        expected, got = (load_checkpoint(tmp_path / run / "checkpoints" / name) for run in ("reference", "run"))
        assert expected["ema"] is not None
        _assert_equal(expected, got, name)
