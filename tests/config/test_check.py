"""`frame check`: names, constructor params, data root and labels, without training or importing torch."""

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

from frame.config.check import CheckError, check_config, check_job, refused_as
from frame.config.json_job import convert
from frame.core.errors import FrameError
from tests.conftest import REPO, run_frame
from tests.seed_project import edit_job, make_project

HEAVY = ["torch", "torchvision", "monai"]


@pytest.mark.slow
def test_a_good_job_checks_without_importing_torch(tmp_path):
    job = make_project(tmp_path)
    probe = textwrap.dedent(f"""
        import json, sys
        from frame.cli import main
        try:
            main(["check", {str(job)!r}])
        except SystemExit as e:
            assert e.code in (None, 0), e.code
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert json.loads(lines[-1]) == []
    assert lines[-2].startswith("ok (")
    assert any(line.split()[:2] == ["model", "src.Models.TinyClassifier.TinyClassifier"] for line in lines)


def test_the_default_config_and_every_shipped_experiment_check(compose):
    for overrides in (
        [],
        ["experiment=classify"],
        ["lr_scheduler=cosine"],
        ["lr_scheduler=plateau"],
        ["lr_scheduler=warmup"],
        ["optimizer=sgd"],
        ["optimizer=adamw"],
    ):
        check_config(compose(overrides))


@pytest.mark.parametrize(
    "change,key,message",
    [
        (
            lambda j: j["model"].update(depth=3),
            "model.depth",
            "TinyClassifier takes no parameter 'depth'. It takes: in_features, num_classes, hidden.",
        ),
        (lambda j: j["model"].pop("num_classes"), "model", "TinyClassifier needs 'num_classes' (it has no default)."),
        (lambda j: j["training"]["dataset"].update(label=["red"]), "training.dataset.label", "Did you mean 'labels'?"),
        (lambda j: j["training"]["lr_scheduler"].pop("step_size"), "training.lr_scheduler", "StepLR needs 'step_size'"),
        (
            lambda j: j["training"]["optimizer"].update(betas=[0.9, 0.99]),
            "training.optimizer.betas",
            "SGD takes no parameter 'betas'",
        ),
        (
            lambda j: j["training"]["dataset"].update(root="./nowhere"),
            "training.dataset.root",
            "nowhere does not exist.",
        ),
        (
            lambda j: j["training"]["dataset"].update(labels=["red", "gren"]),
            "training.dataset.labels",
            "Points cannot provide 'gren'. Did you mean 'green'? It provides: red, green, blue, yellow.",
        ),
        (
            lambda j: j["training"]["dataset"]["sample_transforms"].append({"name": "Shift"}),
            "training.dataset.sample_transforms[1]",
            "Shift needs 'offset'",
        ),
        (
            lambda j: j["model"].update(name="src.Models.Nope.Nope"),
            "model._target_",
            "cannot import src.Models.Nope.Nope",
        ),
        (
            lambda j: j.update(model={"name": "resnet18", "num_clases": 4}),
            "model.num_clases",  # **kwargs -> _resnet -> ResNet
            "resnet18 takes no parameter 'num_clases'. Did you mean 'num_classes'? It takes: weights, progress, num_classes, ",
        ),
        (
            lambda j: j["training"].update(lr_scheduler={"name": "ExponentialLR", "gamma": 0.9}),
            "training.lr_scheduler.gamma",
            "ExponentialLR takes no parameter 'gamma'. It takes: optimizer, end_lr, num_iter, "
            "last_epoch. ('ExponentialLR' resolved to monai.optimizers.lr_scheduler.ExponentialLR; it also names "
            "torch.optim.lr_scheduler.ExponentialLR (torch))",
        ),
    ],
)
def test_problems_name_the_json_file_and_key(tmp_path, change, key, message):
    path = edit_job(make_project(tmp_path), change)
    with pytest.raises(FrameError) as error:
        check_job(convert(path))
    assert f"{path}: {key}: " in str(error.value)
    assert message in str(error.value)


def test_keywords_that_kwargs_passes_on_check_like_named_ones(tmp_path):
    path = edit_job(
        make_project(tmp_path),
        lambda j: j.update(
            model={"name": "resnet18", "num_classes": 4, "pretrained": False, "zero_init_residual": True}
        ),
    )
    model = next(c for c in check_job(convert(path))[1] if c.key == "model")
    assert model.note == ""  # its params were checked, and `pretrained` (a decorator takes it) is no mistake
    bad = run_frame(
        ["run", str(edit_job(path, lambda j: j["model"].update(num_clases=j["model"].pop("num_classes"))))],
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "Did you mean 'num_classes'?" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "outputs").exists()


def test_every_problem_is_reported_at_once(tmp_path):
    path = edit_job(
        make_project(tmp_path), lambda j: (j["model"].update(depth=3), j["training"]["dataset"].update(root="/no"))
    )
    with pytest.raises(FrameError) as error:
        check_job(convert(path))
    assert "model.depth" in str(error.value) and "training.dataset.root" in str(error.value)


def test_overrides_are_checked_with_hydra_keys(compose):
    with pytest.raises(CheckError) as error:
        check_config(compose(["+model.dropuot=0.1"]))
    assert error.value.problems[0].key == "model.dropuot"
    assert "UNet takes no parameter 'dropuot'. Did you mean 'dropout'?" in error.value.problems[0].message
    assert str(error.value).startswith("model.dropuot: UNet takes")


def test_frame_check_exits_2_and_frame_train_creates_no_run_dir(tmp_path):
    bad = run_frame(["check", "+model.dropuot=0.1"], cwd=tmp_path)
    assert (
        bad.returncode == 2
        and "model.dropuot: UNet takes no parameter 'dropuot'. Did you mean 'dropout'?" in bad.stderr
    )
    train = run_frame(["train", "+model.dropuot=0.1"], cwd=tmp_path)
    assert train.returncode == 2 and "dropuot" in train.stderr and "Traceback" not in train.stderr
    assert not (tmp_path / "outputs").exists()


def test_the_organs_job_checks(tmp_path):
    import shutil

    shutil.copytree(REPO / "examples" / "organs" / "src", tmp_path / "src")
    shutil.copytree(REPO / "examples" / "organs" / "config", tmp_path / "config")
    (tmp_path / "data" / "train").mkdir(parents=True)
    out = run_frame(["check", "config/job_01.json"], cwd=tmp_path, check=0).stdout
    assert "src.Datasets.PatientDataset.PatientDataset" in out and out.splitlines()[-1].startswith("ok (")


@pytest.mark.parametrize(
    "overrides,refused",
    [
        (["model._target_=torch.load", "~model.spatial_dims"], "torch.load"),
        (["model._target_=torch.load", "+model.weights_only=false"], "torch.load"),
        (["data.dataset._target_=numpy.load", "+data.dataset.allow_pickle=true"], "numpy.load"),
        (["model._target_=torch.hub.load"], "torch.hub.load"),
        (["data.dataset._target_=pickle.load"], "pickle.load"),
        (["data.dataset._target_=joblib.load"], "joblib.load"),
    ],
)
def test_targets_that_unpickle_are_refused_by_check_and_before_a_run(tmp_path, compose, overrides, refused):
    with pytest.raises(CheckError, match=f"{refused} is refused: it can run arbitrary code"):
        check_config(compose(overrides))
    result = run_frame(["train", "name=x", *overrides], cwd=tmp_path)
    assert result.returncode == 2 and f"{refused} is refused" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "outputs").exists()


def test_the_safe_forms_of_torch_and_numpy_load_are_not_refused(compose):
    with pytest.raises(CheckError) as error:  # still wrong as a dataset (no 'file'), but not refused
        check_config(compose(["data.dataset._target_=numpy.load", "+data.dataset.allow_pickle=false"]))
    assert "refused" not in str(error.value)
    with pytest.raises(CheckError) as error:
        check_config(compose(["data.dataset._target_=torch.load", "+data.dataset.weights_only=true"]))
    assert "refused" not in str(error.value)


def _aliases(directory) -> None:
    """A package that hands out refused targets under other names: re-exports, aliases, a dynamic one."""
    (directory / "mylib").mkdir()
    (directory / "mylib" / "__init__.py").write_text("from .io import fetch as grab\n")
    (directory / "mylib" / "io.py").write_text(
        "import pickle\nfrom os import system as sh\nfrom torch import load as fetch\n"
        "unpickle = pickle.loads\nrun = eval\nagain = unpickle\n"
    )
    (directory / "mylib" / "dynamic.py").write_text('globals()["sneaky"] = __import__("pickle").loads\n')


@pytest.mark.parametrize(
    "target, resolved",
    [
        ("mylib.grab", "torch.load"),
        ("mylib.io.fetch", "torch.load"),
        ("mylib.io.unpickle", "pickle.loads"),
        ("mylib.io.again", "pickle.loads"),
        ("mylib.io.sh", "os.system"),
        ("mylib.io.run", "builtins.eval"),
    ],
)
def test_a_refused_target_under_another_name_is_refused_by_what_it_resolves_to(
    tmp_path, monkeypatch, compose, target, resolved
):
    _aliases(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert refused_as(target) == resolved
    with pytest.raises(CheckError, match=rf"{target} \(it is {resolved}\) is refused"):
        check_config(compose([f"data.dataset._target_={target}"]))
    assert not any(name == "mylib" or name.startswith("mylib.") for name in sys.modules)  # read, not imported


def test_a_dynamic_alias_is_refused_once_its_module_is_imported(tmp_path, monkeypatch):
    _aliases(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mylib.dynamic", raising=False)
    assert refused_as("mylib.dynamic.sneaky") is None  # source reading cannot see it, and nothing is imported
    importlib.import_module("mylib.dynamic")
    assert refused_as("mylib.dynamic.sneaky") == "pickle.loads"  # compared as objects: what eval/predict meet
    assert refused_as("torch.optim.Adam") is None


def _experiment(directory, body: str) -> str:
    (directory / "experiment").mkdir(parents=True, exist_ok=True)
    (directory / "experiment" / "mine.yaml").write_text("# @package _global_\n" + textwrap.dedent(body))
    return str(directory)


def test_a_model_of_ones_own_merged_into_the_preset_says_how_to_replace_it(tmp_path):
    merged = _experiment(tmp_path, "model: {_target_: torch.nn.Linear, in_features: 4, out_features: 2}\n")
    with pytest.raises(CheckError) as error:
        check_job(overrides=["experiment=mine"], config_dir=merged)
    assert "Linear takes no parameter 'spatial_dims'" in str(error.value)
    assert error.value.problems[-1].key == "model"
    assert "preset model=unet3d" in str(error.value) and "`- override /model: null`" in str(error.value)
    replaced = _experiment(
        tmp_path,
        """\
        defaults: [{override /model: null}]
        model: {_target_: torch.nn.Linear, in_features: 4, out_features: 2}
        """,
    )
    cfg, _ = check_job(overrides=["experiment=mine"], config_dir=replaced)  # the advice works
    assert dict(cfg.model) == {"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 2}


def test_a_typo_in_one_param_gets_no_preset_advice(compose):
    with pytest.raises(CheckError) as error:
        check_config(compose(["+model.dropuot=0.1"], return_hydra_config=True))
    assert "override /model" not in str(error.value)


@pytest.mark.parametrize(
    "body,expected",
    [
        ("logger: [jsonl]\n", "`- override /logger: [jsonl]`"),
        ("model: mlp\n", "put `- override /model: mlp` in the file's defaults list, or pass model=mlp"),
    ],
)
def test_a_group_set_in_a_files_body_says_where_groups_are_picked(tmp_path, body, expected):
    config_dir = _experiment(tmp_path / "conf", body)
    with pytest.raises(FrameError, match="override") as error:
        check_job(overrides=["experiment=mine"], config_dir=config_dir)
    assert expected in str(error.value)
    train = run_frame(["train", "--config-dir", config_dir, "experiment=mine"], cwd=tmp_path)
    assert train.returncode == 2 and expected in train.stderr and "Traceback" not in train.stderr
    assert not (tmp_path / "outputs").exists()


def test_the_checked_config_resolves_outside_a_run():
    """What `check_job` returns is the job's config: no `hydra` node, whose `${hydra:...}` only resolves in a run
    (scripts/bench/preload.py resolves it whole)."""
    from omegaconf import OmegaConf

    cfg, _ = check_job(overrides=["experiment=classify"])
    assert "hydra" not in cfg and OmegaConf.to_container(cfg, resolve=True)["name"] == "classify"


@pytest.mark.parametrize(
    "overrides, key, message",
    [
        (
            ["+evaluators.overlap={_target_: frame.training.evaluators.Dice}"],
            "evaluators.overlap",
            "evaluators.dice and evaluators.overlap both report 'dice'",
        ),
        (
            [
                "+evaluators.f1={_target_: frame.training.metrics.LibraryMetric, metric: {_target_: monai.metrics.DiceMetric}, key: dice}"
            ],
            "evaluators.f1",
            "evaluators.dice and evaluators.f1 both report 'dice'",
        ),
        (
            ["trainer.monitor=val/dcie"],
            "trainer.monitor",
            "val/dcie is not among the metrics the evaluators report: "
            "train/epoch_time_s, val/dice, val/loss. Did you mean 'val/dice'?",
        ),
        (
            ["lr_scheduler=plateau", "lr_scheduler.mode=min"],
            "lr_scheduler.mode",
            "min contradicts trainer.monitor_mode=max",
        ),
    ],
)
def test_check_refuses_what_the_run_would_refuse_before_its_first_epoch(compose, overrides, key, message):
    """`frame check` said ok to these, then `frame run` refused them (two evaluators on one key, ...)."""
    with pytest.raises(CheckError) as error:
        check_config(compose(overrides))
    assert [(p.key, message in p.message) for p in error.value.problems] == [(key, True)], error.value.problems


def test_check_passes_what_it_cannot_know(compose):
    """A project evaluator's keys are what its compute() returns: no static verdict on it or the monitor."""
    check_config(
        compose(
            [
                "evaluators=[]",
                "+evaluators.mine={_target_: frame.training.evaluators.Accuracy}",
                "trainer.monitor=val/accuracy",
                "+evaluators.other={_target_: collections.OrderedDict}",
                "trainer.monitor=val/anything",
            ]
        )
    )
    check_config(compose(["trainer.monitor=val/dice/liver"]))  # a per-label key of the dice


def test_a_dataset_of_ones_own_with_one_leftover_preset_param_says_how_to_replace_the_preset(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "blobs.py").write_text(
        "class Blobs:\n    def __init__(self, num_samples=8, size=(8, 8, 8)):\n        self.n = num_samples\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    merged = _experiment(tmp_path / "conf", "data: {dataset: {_target_: mypkg.blobs.Blobs, num_samples: 4}}\n")
    with pytest.raises(CheckError) as error:  # synthetic_organs' labels stay behind (size is a Blobs param too)
        check_job(overrides=["experiment=mine"], config_dir=merged)
    assert "Blobs takes no parameter 'labels'" in str(error.value)
    assert "preset data=synthetic_organs" in str(error.value) and "`- override /data: null`" in str(error.value)
