"""What validation scores: `data.val` (a dataset of its own), the split's share through the deterministic
transforms only, and the run's `inferer` (frame.training.build, frame.training.loop.validate)."""

import contextlib

import torch

from frame.data.synthetic import SyntheticClasses
from frame.training.build import build_job
from frame.training.loop import validate

CLASSIFY = ["experiment=classify", "data.dataset.num_samples=40", "data.batch_size=8", "trainer.epochs=1"]
NOISE = "+data.sample_transforms=[{_target_: monai.transforms.RandGaussianNoise, prob: 1.0, std: 5.0}]"


def _val_items(job) -> torch.Tensor:
    return torch.cat([sample for sample, _ in job.val_loader])


def test_the_split_validates_through_the_deterministic_transforms_only(compose, tmp_path):
    job = build_job(compose([*CLASSIFY, NOISE]), tmp_path)
    dataset = SyntheticClasses(num_samples=40)
    validated = _val_items(job)
    raw = torch.stack([torch.as_tensor(dataset[i][0]) for i in job.val_loader.dataset.indices])
    assert torch.equal(validated, raw)  # was: the training noise, fixed per item
    trained = next(iter(job.train_loader))[0]
    first = torch.stack([torch.as_tensor(dataset[i][0]) for i in job.train_loader.dataset.indices[:8]])
    assert not torch.allclose(trained, first)  # training still sees its augmentation


def test_data_val_is_a_dataset_of_its_own_with_its_own_transforms(compose, tmp_path):
    val = (
        "data.val={dataset: {_target_: frame.data.synthetic.SyntheticClasses, num_samples: 12, seed: 7}, "
        "sample_transforms: [{_target_: torch.nn.Identity}], batch_size: 5}"
    )
    job = build_job(compose([*CLASSIFY, NOISE, val]), tmp_path)
    own = SyntheticClasses(num_samples=12, seed=7)
    assert len(job.val_loader.dataset) == 12 and job.val_loader.batch_size == 5
    assert torch.equal(_val_items(job), torch.stack([torch.as_tensor(own[i][0]) for i in range(12)]))
    assert len(job.train_loader.dataset) == 40  # every item of data.dataset trains: no split


def test_validation_runs_the_model_through_the_runs_inferer(compose, tmp_path):
    """A sliding window over whole volumes, as MONAI's tutorials validate: the logged figures are those of
    `sliding_window_inference` on each volume, not of the model called on it whole."""
    from monai.inferers import sliding_window_inference

    overrides = [
        "data.dataset.num_samples=4",
        "data.dataset.size=[16,16,16]",
        "model.channels=[4,8]",
        "model.strides=[2]",
        "data.split_ratio=0.5",
        "data.batch_size=1",
        "data.sample_transforms=[]",
    ]
    window = (
        "+inferer={_target_: monai.inferers.SlidingWindowInferer, roi_size: [8,8,8], sw_batch_size: 2, overlap: 0.5}"
    )
    plain = build_job(compose(overrides), tmp_path / "plain")
    windowed = build_job(compose([*overrides, window]), tmp_path / "windowed")
    windowed.model.load_state_dict(plain.model.state_dict())
    metrics, _ = validate(windowed, contextlib.nullcontext())
    whole, _ = validate(plain, contextlib.nullcontext())
    dataset = windowed.val_loader.dataset.dataset
    loss = 0.0
    with torch.no_grad():
        for index in windowed.val_loader.dataset.indices:
            sample, target = (torch.as_tensor(t)[None] for t in dataset[index])
            output = sliding_window_inference(sample, (8, 8, 8), 2, windowed.model.eval(), overlap=0.5)
            loss += float(windowed.loss_fn(output, target))
    assert abs(metrics["val/loss"] - loss / 2) < 1e-5
    assert abs(metrics["val/loss"] - whole["val/loss"]) > 1e-4  # the window changes what the model sees
