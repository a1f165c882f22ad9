"""`frame predict` on NIfTI files: label maps that keep the input's affine, sliding windows, bad input."""

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_frame
from tests.trained_run import trained_run  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow
AFFINE = np.array([[2.0, 0, 0, -10], [0, 1.5, 0, 5], [0, 0, 3.0, 7], [0, 0, 0, 1]])


class NeedsCentre:
    """A project's transform that reads what its dataset put in the item (examples/organs crops so)."""

    def __call__(self, volume):
        return volume[..., volume.meta["brainstem_center"][0] :]


def _volume(path, size):
    from frame.data.synthetic import SyntheticOrgans

    volume = SyntheticOrgans(num_samples=1, size=size, seed=9)[0][0][0].numpy()
    nib.save(nib.Nifti1Image(volume, AFFINE), path)


def test_predict_writes_label_maps_with_the_inputs_affine(trained_run, tmp_path):
    _, run = trained_run
    (tmp_path / "in").mkdir()
    _volume(tmp_path / "in" / "a.nii.gz", (16, 16, 16))
    _volume(tmp_path / "in" / "big.nii.gz", (24, 24, 24))  # larger than training: windows of 16
    done = run_frame(
        [
            "predict",
            str(run),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--roi-size",
            "16,16,16",
            "--device",
            "cpu",
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for name, shape in (("a", (16, 16, 16)), ("big", (24, 24, 24))):
        image = nib.load(tmp_path / "out" / f"{name}_pred.nii.gz")
        np.testing.assert_allclose(image.affine, AFFINE)
        labels = np.asarray(image.dataobj)
        assert labels.shape == shape and labels.min() >= 0 and labels.max() <= 4
    assert "2 items" in done.stdout


def test_predict_on_the_runs_dataset_without_input(trained_run, tmp_path):
    _, run = trained_run
    done = run_frame(
        ["predict", str(run), "--output", str(tmp_path), "--device", "cpu", "data.dataset.num_samples=2"], cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item-0000_pred.nii.gz", "item-0001_pred.nii.gz"]


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--input", "{tmp}/missing.nii.gz"], "no such file or folder"),
        ("garbage", ["--input", "{tmp}/bad.nii.gz"], "could not read"),
        ("volume", ["--input", "{tmp}/v.nii.gz", "--checkpoint", "nope"], "no checkpoint 'nope'"),
        ("volume", ["--input", "{tmp}/v.nii.gz", "--roi-size", "16,16"], "has 2 sizes"),
        ("volume", ["--input", "{tmp}/v.nii.gz", "predict.roi_size=[16,16]"], "has 2 sizes"),  # the run's key
        ("volume", ["--input", "{tmp}/v.nii.gz", "predict.overlap=1.5"], "expected a number >= 0 and < 1"),
        (
            "volume",
            [
                "--input",
                "{tmp}/v.nii.gz",
                "data.sample_transforms=[{{_target_:tests.trained.test_predict.NeedsCentre}}]",
            ],
            "NeedsCentre fails on",
        ),
        ("volume", ["--input", "{tmp}/v.nii.gz", "--postprocess", "softmax"], "choose one of"),
    ],
)
def test_predict_bad_input_exits_2_with_a_message(trained_run, tmp_path, setup, args, message):
    _, run = trained_run
    if setup == "garbage":
        (tmp_path / "bad.nii.gz").write_bytes(b"not a volume")
    if setup == "volume":
        _volume(tmp_path / "v.nii.gz", (16, 16, 16))
    done = run_frame(
        [
            "predict",
            str(run),
            "--output",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *[a.format(tmp=tmp_path) for a in args],
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_predict_writes_a_csv_of_classes_with_the_datasets_label_names(tmp_path):
    """A user's classifier (the seed-style project): one row per validation item (named by its index in the
    dataset), the label's name, a score per class."""
    import csv

    from omegaconf import OmegaConf

    from frame.data.loading import split_indices
    from tests.seed_project import CLASSES, make_project

    job = make_project(tmp_path)
    run_frame(["run", str(job)], cwd=tmp_path, check=0)
    told = run_frame(
        ["predict", "outputs/points", "--output", "predicted", "--device", "cpu", "predict.postprocess=sigmoid"],
        cwd=tmp_path,
        check=0,
    )
    assert "label maps" not in told.stdout + told.stderr  # a classifier makes none: no word of how it would
    with open(tmp_path / "predicted" / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    truth = [line.rsplit(",", 1)[1].strip() for line in (tmp_path / "data" / "points.csv").read_text().splitlines()]
    config = OmegaConf.load(tmp_path / "outputs" / "points" / ".hydra" / "config.yaml")
    share = split_indices(len(truth), config.data.split_ratio, config.seed)[1]  # the items validation scored
    assert [r["item"] for r in rows] == [f"item-{index:04d}" for index in share] and 0 < len(rows) < 256
    assert list(rows[0]) == ["item", "prediction", *(f"score/{c}" for c in CLASSES)]
    assert all(abs(sum(float(r[f"score/{c}"]) for c in CLASSES) - 1) < 1e-4 for r in rows)
    assert sum(r["prediction"] == truth[index] for r, index in zip(rows, share)) / len(rows) > 0.9


@pytest.mark.parametrize(
    "loss, expected",
    [
        (["loss=dice_bce"], "sigmoid"),  # frame's multi-label organs: a channel per label
        (["loss=cross_entropy"], "argmax"),
        (
            ["~loss", "+loss={_target_:monai.losses.DiceCELoss,to_onehot_y:true,softmax:true}"],
            "argmax",
        ),  # MONAI's usual
        (["~loss", "+loss={_target_:monai.losses.DiceLoss,sigmoid:true}"], "sigmoid"),
        (["~loss", "+loss={_target_:torch.nn.MSELoss}"], None),  # says nothing: auto takes sigmoid, as before
    ],
)
def test_label_maps_follow_the_activation_the_loss_trains_with(compose, loss, expected):
    from frame.trained.predict import as_trained

    assert as_trained(compose(loss)) == expected


def test_a_softmax_run_predicts_background_as_0_by_default(trained_run, tmp_path):
    """The organs run trained with sigmoids; told it trained with a softmax, its maps are argmax maps:
    channel 0 (the background of a softmax set-up) is label 0, where the sigmoid reading makes it 1."""
    _, run = trained_run
    _volume(tmp_path / "v.nii.gz", (16, 16, 16))
    args = ["predict", str(run), "--input", str(tmp_path / "v.nii.gz"), "--device", "cpu"]
    done = run_frame(
        [
            *args,
            "--output",
            str(tmp_path / "soft"),
            "~loss",
            "+loss={_target_:monai.losses.DiceCELoss,to_onehot_y:true,softmax:true}",
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "(label maps: argmax)" in done.stdout, done.stderr
    done = run_frame(
        [*args, "--output", str(tmp_path / "sig"), "--postprocess", "sigmoid", "--threshold", "0"], cwd=tmp_path
    )
    assert done.returncode == 0 and "(label maps: sigmoid)" in done.stdout and "warning" not in done.stderr, done.stderr
    done = run_frame([*args, "--output", str(tmp_path / "argmax"), "--postprocess", "argmax"], cwd=tmp_path)
    assert (
        done.returncode == 0 and "label maps by argmax, but the run's loss trains for sigmoid" in done.stderr
    )  # a run of old says so
    soft, sig = (np.asarray(nib.load(tmp_path / d / "v_pred.nii.gz").dataobj) for d in ("soft", "sig"))
    np.testing.assert_array_equal(sig, soft + 1)  # threshold 0: every voxel gets 1 + its most probable channel
