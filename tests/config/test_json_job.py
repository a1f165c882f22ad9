"""JSON jobs: parsing with comments, every seed key mapped, bad input named by file and key, round trip."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from frame.config.json_job import JobError, convert, load
from frame.core.errors import FrameError
from tests.conftest import REPO, run_frame
from tests.seed_project import edit_job, make_project

SEED = Path(__file__).parent / "fixtures" / "seed_job.json"  # the seed format's example job, verbatim
ORGANS = REPO / "examples" / "organs"
KEY = "0123456789abcdef0123456789abcdef01234567"


def _seed_job(tmp_path, change=None) -> Path:
    """The seed's example, its placeholders filled in, as a job of the organs project."""
    text = SEED.read_text().replace('"<name>"', '"seed_example"').replace("<your wandb api key>", KEY)
    path = tmp_path / "config" / "job_01.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return edit_job(path, change) if change else path


def test_the_seed_example_parses_verbatim():
    job = load(SEED)  # // comments, trailing commas
    assert job["training"]["dataset"]["labels"][0] == "BrainStem"
    assert job["training"]["optimizer"]["learning_rate"] == 0.001
    assert len(job["training"]["dataset"]["sample_transforms"]) == 3


# JSON key -> (Hydra key, expected value); docs/reference/json-jobs.md's table says the same.
MAPPING = [
    ("name", "name", "seed_example"),
    ("resume", "resume", True),
    ("preload", "data.preload", True),
    ("wandb_project_name", "logger.wandb.project", "<wandb project>"),
    ("wandb_prediction_examples", "logger.wandb.prediction_examples", 8),
    ("model.name", "model._target_", "src.Models.OrganNet25D.OrganNet25D"),
    ("training.epochs", "trainer.epochs", 300),
    ("training.detect_bad_gradients", "trainer.detect_bad_gradients", False),
    ("training.grad_norm_clip", "trainer.grad_norm_clip", 1),
    ("training.split_ratio", "data.split_ratio", 0.77),
    ("training.batch_size", "data.batch_size", 2),
    ("training.loss.name", "loss._target_", "src.losses.CombinedLoss"),
    ("training.optimizer.name", "optimizer._target_", "torch.optim.Adam"),
    ("training.optimizer.learning_rate", "optimizer.lr", 0.001),
    ("training.lr_scheduler.name", "lr_scheduler._target_", "torch.optim.lr_scheduler.MultiStepLR"),
    ("training.lr_scheduler.gamma", "lr_scheduler.gamma", 0.1),
    ("training.lr_scheduler.milestones", "lr_scheduler.milestones", [50, 100]),
    ("training.dataset (no name)", "data.dataset._target_", "src.Datasets.PatientDataset.PatientDataset"),
    ("training.dataset.root", "data.dataset.root", "${project}/data/train"),
    ("training.dataset.num_workers", "data.num_workers", 2),
    (
        "training.dataset.labels",
        "data.dataset.labels",
        [
            "BrainStem",
            "Chiasm",
            "Mandible",
            "OpticNerve_L",
            "OpticNerve_R",
            "Parotid_L",
            "Parotid_R",
            "Submandibular_L",
            "Submandibular_R",
        ],
    ),
    (
        "training.dataset.label_transforms",
        "data.label_transforms",
        [
            {"_target_": "frame.data.transforms.Transpose", "dim_1": 0, "dim_2": -1},
            {"_target_": "src.Data.transforms.CropAroundBrainStem", "width": 256, "height": 256, "depth": 48},
        ],
    ),
    (
        "training.dataset.sample_transforms",
        "data.sample_transforms",
        [
            {"_target_": "frame.data.transforms.Transpose", "dim_1": 0, "dim_2": -1},
            {"_target_": "src.Data.transforms.CropAroundBrainStem", "width": 256, "height": 256, "depth": 48},
            {"_target_": "frame.data.transforms.StandardScaleTensor"},
        ],
    ),
]


def test_every_key_of_the_seed_example_maps(tmp_path):
    job = convert(_seed_job(tmp_path), project=ORGANS)
    experiment = OmegaConf.create(job.experiment)
    for json_key, hydra_key, expected in MAPPING:
        value = OmegaConf.select(experiment, hydra_key, throw_on_resolution_failure=False)
        if hydra_key == "data.dataset.root":
            value = experiment.data.dataset._get_node("root")._value()  # as written, not resolved
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert value == expected, json_key
    assert experiment.optimizer._partial_ and experiment.lr_scheduler._partial_
    assert experiment.logger.wandb._target_ == "frame.tracking.wandb.WandbLogger"
    assert experiment.project == str(ORGANS)
    assert "learning_rate" not in experiment.optimizer and "num_workers" not in experiment.data.dataset


def test_the_wandb_key_goes_to_the_environment_only(tmp_path):
    job = convert(_seed_job(tmp_path), project=ORGANS)
    assert job.env == {"WANDB_API_KEY": KEY}
    assert KEY not in json.dumps(job.experiment) and KEY not in job.to_yaml()
    assert "wandb_api_key" not in job.to_yaml().split("\n", 5)[-1]  # only the header's note mentions it


def test_the_template_key_placeholder_is_no_key(tmp_path):
    path = tmp_path / "config" / "job.json"
    path.parent.mkdir()
    path.write_text(SEED.read_text().replace('"<name>"', '"x"'))
    assert convert(path, project=ORGANS).env == {}


def test_yaml_is_a_global_experiment_that_replaces_the_presets(tmp_path):
    text = convert(_seed_job(tmp_path), project=ORGANS).to_yaml()
    assert text.startswith("# @package _global_\n")
    defaults = OmegaConf.create(text).defaults
    assert {"override /model": None} in OmegaConf.to_container(defaults)
    assert {"override /logger": None} not in OmegaConf.to_container(defaults)  # jsonl and console stay


def test_the_verbatim_template_name_is_rejected_by_key(tmp_path):
    path = tmp_path / "config" / "job.json"
    path.parent.mkdir()
    path.write_text(SEED.read_text())
    with pytest.raises(JobError, match=r"config/job.json: name: '<name>' is invalid"):
        convert(path, project=ORGANS)


def test_a_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{\n  "name": "x",\n  "model": {"name": "UNet"\n  "training": {}\n}\n')
    with pytest.raises(JobError) as error:
        load(path)
    assert str(error.value).startswith(f"{path}:4:3: Unexpected")


def test_a_duplicate_key_is_an_error(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"name": "a", "name": "b"}')
    with pytest.raises(JobError, match='Duplicate key "name"'):
        load(path)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda j: j.update(epochs=3), r"epochs: unknown key\. It belongs under 'training'"),
        (lambda j: j["training"].update(epoch=3), r"training\.epoch: unknown key\. Did you mean 'epochs'\?"),
        (
            lambda j: j["training"].update(epochs="ten"),
            r"training\.epochs: value 'ten' of type 'str' could not be converted to Integer",
        ),
        (
            lambda j: j["training"].update(split_ratio=1.5),
            r"training\.split_ratio: 1\.5 is invalid: expected a number strictly between 0 and 1",
        ),
        (
            lambda j: j["model"].update(name="TinyClasifier"),
            r"model\.name: 'TinyClasifier' is not a model in .* Did you mean 'TinyClassifier'\?",
        ),
        (
            lambda j: j["training"]["optimizer"].update(lr=0.1),
            r"training\.optimizer\.learning_rate: give learning_rate or lr, not both",
        ),
        (lambda j: j.pop("model"), r"model: missing"),
        (
            lambda j: j["training"]["dataset"].update(sample_transforms={"name": "Shift"}),
            r"training\.dataset\.sample_transforms: expected a list",
        ),
    ],
)
def test_bad_jobs_name_file_and_key(tmp_path, change, message):
    path = edit_job(make_project(tmp_path), change)
    with pytest.raises(JobError, match=rf"^{path}: {message}"):
        convert(path)


def test_a_dataset_without_name_needs_exactly_one_in_the_project(tmp_path):
    path = edit_job(make_project(tmp_path), lambda j: j["training"]["dataset"].pop("name", None))
    assert convert(path).experiment["data"]["dataset"]["_target_"] == "src.Datasets.Points.Points"
    (tmp_path / "src" / "Datasets" / "More.py").write_text("class More:\n    pass\n")
    with pytest.raises(
        JobError, match=r"training\.dataset\.name: missing, and the project's src/Datasets/ holds More, Points"
    ):
        convert(path)


def test_a_test_dataset_becomes_data_test_with_the_training_datasets_class(tmp_path):
    from frame.config.check import check_job

    path = edit_job(
        make_project(tmp_path),
        lambda j: j["training"].update(test_dataset={"root": "./data", "label_transforms": [{"name": "as_long"}]}),
    )
    assert convert(path).experiment["data"]["test"] == {
        "dataset": {"_target_": "src.Datasets.Points.Points", "root": "${project}/data"},
        "label_transforms": [{"_target_": "src.Data.transforms.as_long", "_partial_": True}],
    }
    cfg, checked = check_job(convert(path))
    assert cfg.data.test.dataset.root == str(tmp_path / "data") and "data.test.dataset" in [c.key for c in checked]
    edit_job(path, lambda j: j["training"]["test_dataset"].update(num_workers=2, fil="points.csv"))
    with pytest.raises(JobError, match=rf"^{path}: training\.test_dataset\.num_workers: not for a test set"):
        convert(path)
    edit_job(path, lambda j: j["training"]["test_dataset"].pop("num_workers"))
    with pytest.raises(
        FrameError, match=r"training\.test_dataset\.fil: Points takes no parameter 'fil'\. Did you mean 'file'\?"
    ):
        check_job(convert(path))


def test_evaluators_and_loggers_are_keyed_by_their_class(tmp_path):
    path = edit_job(
        make_project(tmp_path),
        lambda j: j.update(
            evaluators=[{"name": "Accuracy"}, {"name": "Accuracy"}], metric_loggers=[{"name": "Summary"}]
        ),
    )
    experiment = convert(path).experiment
    assert list(experiment["evaluators"]) == ["accuracy", "accuracy_2"]
    assert experiment["logger"] == {"summary": {"_target_": "src.MetricLoggers.Summary.Summary"}}


def test_function_transforms_are_partial(tmp_path):
    experiment = convert(make_project(tmp_path)).experiment
    assert experiment["data"]["label_transforms"] == [{"_target_": "src.Data.transforms.as_long", "_partial_": True}]


def test_convert_then_train_composes_the_same_config_as_run(tmp_path):
    """`frame convert -o conf/experiment/job.yaml` + `frame train experiment=job` == `frame run job.json`."""
    job = make_project(tmp_path)
    written = run_frame(["convert", str(job), "-o", "conf/experiment/job.yaml"], cwd=tmp_path, check=0)
    assert "frame train --config-dir conf experiment=job" in written.stderr
    train = run_frame(
        ["train", "--config-dir", "conf", "experiment=job", "trainer.epochs=7", "--cfg", "job"], cwd=tmp_path, check=0
    ).stdout
    run = run_frame(["run", str(job), "trainer.epochs=7", "--cfg", "job"], cwd=tmp_path, check=0).stdout
    assert OmegaConf.create(train) == OmegaConf.create(run)
    composed = OmegaConf.create(run)
    assert composed.trainer.epochs == 7 and composed.model._target_ == "src.Models.TinyClassifier.TinyClassifier"
    assert composed.name == "points" and composed.evaluators.keys() == {"accuracy"}
    assert set(composed.logger) == {"jsonl", "console", "summary"}


@pytest.mark.slow
def test_convert_imports_no_torch(tmp_path):
    job = make_project(tmp_path)
    probe = (
        "import json, sys\n"
        "from frame.cli import main\n"
        f"main(['convert', {str(job)!r}, '-o', 'out.yaml'])\n"
        "print(json.dumps([m for m in ('torch', 'torchvision', 'monai') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == []
    assert (tmp_path / "out.yaml").read_text().startswith("# @package _global_")


def test_convert_prints_yaml_without_o(tmp_path):
    out = run_frame(["convert", str(make_project(tmp_path))], cwd=tmp_path, check=0).stdout
    assert out.startswith("# @package _global_") and "_target_: torch.optim.SGD" in out


def _user_job(tmp_path, job: dict) -> Path:
    path = tmp_path / "config" / "job.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job))
    return path


def test_nested_components_dictionary_transforms_and_library_metrics_convert(tmp_path):
    keys = ["img", "seg"]
    path = _user_job(
        tmp_path,
        {
            "model": {
                "name": "UNet",
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [4, 8],
                "strides": [2],
            },
            "training": {
                "loss": "DiceCELoss",
                "optimizer": "Adam",
                "dataset": {
                    "name": "FakeData",
                    "size": 4,
                    "keys": keys,
                    "transform": {
                        "name": "Compose",
                        "transforms": [{"name": "ToTensor"}, {"name": "Normalize", "mean": [0.5], "std": [0.5]}],
                    },
                    "transforms": [
                        {"name": "LoadImaged", "keys": keys},
                        {"name": "RandCropByPosNegLabeld", "keys": keys, "label_key": "seg", "spatial_size": [8, 8, 8]},
                    ],
                },
            },
            "evaluators": [
                {"name": "DiceMetric", "include_background": False, "activation": "softmax", "key": "fg_dice"},
                {"name": "MulticlassAccuracy", "num_classes": 2},
            ],
        },
    )
    out = convert(path).experiment
    transform = out["data"]["dataset"]["transform"]
    assert transform["_target_"] == "torchvision.transforms.Compose"
    assert [t["_target_"] for t in transform["transforms"]] == [
        "torchvision.transforms.ToTensor",
        "torchvision.transforms.Normalize",
    ]
    assert [t["_target_"] for t in out["data"]["transforms"]] == [
        "monai.transforms.LoadImaged",
        "monai.transforms.RandCropByPosNegLabeld",
    ]
    assert out["data"]["keys"] == keys and "transforms" not in out["data"]["dataset"]
    assert out["evaluators"]["dice_metric"] == {
        "_target_": "frame.training.metrics.LibraryMetric",
        "activation": "softmax",
        "key": "fg_dice",
        "metric": {"_target_": "monai.metrics.DiceMetric", "include_background": False},
    }
    assert out["evaluators"]["multiclass_accuracy"]["metric"] == {
        "_target_": "torchmetrics.classification.MulticlassAccuracy",
        "num_classes": 2,
    }
    from hydra.utils import instantiate

    built = instantiate(OmegaConf.create(out["data"]["dataset"]))  # was: 'DictConfig' object is not callable
    image, _ = built[0]
    assert tuple(image.shape) == (3, 224, 224) and float(image.min()) >= -1.0


def test_a_nested_name_found_nowhere_is_named_by_its_key(tmp_path):
    path = _user_job(
        tmp_path,
        {
            "model": "UNet",
            "training": {
                "loss": "DiceLoss",
                "optimizer": "Adam",
                "dataset": {"name": "FakeData", "transform": {"name": "ToTensr"}},
            },
        },
    )
    with pytest.raises(JobError, match=r"training.dataset.transform.name: 'ToTensr' is not a transform.*ToTensor"):
        convert(path)


@pytest.mark.parametrize(
    "name, key",
    [
        ("OrganDice", "organ_dice"),
        ("CSVLogger", "csv_logger"),
        ("MeanIoU", "mean_iou"),
        ("MulticlassF1Score", "multiclass_f1_score"),
        ("BinaryJaccardIndex", "binary_jaccard_index"),
    ],
)
def test_names_become_snake_case_keys(name, key):
    from frame.config.json_job import snake

    assert snake(name) == key


def test_convert_never_writes_onto_the_job_it_reads(tmp_path):
    job = make_project(tmp_path)
    before = job.read_bytes()
    (tmp_path / "alias.json").symlink_to(job)
    for output in (str(job), "alias.json"):
        result = run_frame(["convert", str(job), "-o", output], cwd=tmp_path)
        assert result.returncode == 2 and "is an input of this command" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and job.read_bytes() == before
    (tmp_path / "taken").write_text("a file")
    result = run_frame(["convert", str(job), "-o", "taken/job.yaml"], cwd=tmp_path)
    assert result.returncode == 2 and "taken is not a folder" in result.stderr, result.stderr


@pytest.mark.slow
def test_a_validation_dataset_becomes_data_val_and_round_trips_through_convert(tmp_path):
    """`training.validation_dataset` beside `training.dataset`: the run's `data.val`, and `frame convert`'s
    experiment composes to the same config as `frame run` on the JSON."""
    path = edit_job(
        make_project(tmp_path),
        lambda j: (
            j["training"].update(
                validation_dataset={
                    "root": "./data",
                    "sample_transforms": [],
                    "label_transforms": [{"name": "as_long"}],
                }
            ),
            j["evaluators"].extend(
                [{"name": "DiceMetric"}, {"name": "MeanIoU", "post_pred": {"name": "AsDiscrete", "threshold": 0.5}}]
            ),
        ),
    )
    out = convert(path).experiment
    assert out["data"]["val"] == {
        "dataset": {"_target_": "src.Datasets.Points.Points", "root": "${project}/data"},
        "sample_transforms": [],
        "label_transforms": [{"_target_": "src.Data.transforms.as_long", "_partial_": True}],
    }
    assert out["evaluators"]["dice_metric"]["activation"] == "auto"  # a MONAI metric by name: as the loss trains
    assert out["evaluators"]["mean_iou"]["post_pred"] == {"_target_": "monai.transforms.AsDiscrete", "threshold": 0.5}
    assert "activation" not in out["evaluators"]["mean_iou"]
    run_frame(["convert", str(path), "-o", "conf/experiment/job.yaml"], cwd=tmp_path, check=0)
    train = run_frame(["train", "--config-dir", "conf", "experiment=job", "--cfg", "job"], cwd=tmp_path, check=0).stdout
    run = run_frame(["run", str(path), "--cfg", "job"], cwd=tmp_path, check=0).stdout
    assert OmegaConf.create(train) == OmegaConf.create(run)
    assert OmegaConf.create(run).data.val.dataset.root == str(tmp_path / "data")
    edit_job(path, lambda j: j["training"]["validation_dataset"].update(num_workers=2))
    with pytest.raises(JobError, match=r"training\.validation_dataset\.num_workers: not for a val set"):
        convert(path)


def test_a_chained_scheduler_and_batch_transforms_convert_and_build(tmp_path):
    """`SequentialLR` with inner `schedulers` (each `_partial_`: frame passes them the optimizer) and
    `training.dataset.batch_transforms` -> `data.batch_transforms`; the YAML reads back as the experiment."""
    from frame.config.check import check_job
    from frame.training.build import build_scheduler

    warmup = {"name": "torch.optim.lr_scheduler.LinearLR", "start_factor": 0.1, "total_iters": 2}
    path = edit_job(
        make_project(tmp_path),
        lambda j: (
            j["training"].update(
                lr_scheduler={
                    "name": "SequentialLR",
                    "milestones": [2],
                    "schedulers": [warmup, {"name": "CosineAnnealingLR", "T_max": 3}],
                }
            ),
            j["training"]["dataset"].update(
                batch_transforms=[{"name": "torchvision.transforms.v2.MixUp", "num_classes": 4}]
            ),
        ),
    )
    job = convert(path)
    scheduler = job.experiment["lr_scheduler"]
    assert scheduler == {
        "_target_": "torch.optim.lr_scheduler.SequentialLR",
        "_partial_": True,
        "milestones": [2],
        "schedulers": [
            {"_target_": "torch.optim.lr_scheduler.LinearLR", "_partial_": True, "start_factor": 0.1, "total_iters": 2},
            {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True, "T_max": 3},
        ],
    }
    assert job.experiment["data"]["batch_transforms"] == [
        {"_target_": "torchvision.transforms.v2.MixUp", "num_classes": 4}
    ]
    assert OmegaConf.to_container(OmegaConf.create(job.to_yaml())) == job.experiment  # frame convert's file
    cfg, _ = check_job(job)
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    built = build_scheduler(cfg, optimizer)
    assert [type(s).__name__ for s in built._schedulers] == ["LinearLR", "CosineAnnealingLR"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
