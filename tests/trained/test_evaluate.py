"""`frame eval`, `frame.load_model` and `frame.load_run` on a real tiny run."""

import csv
import json
import shutil

import pytest

from tests.best_metric import reproduce_best
from tests.conftest import run_frame
from tests.trained_run import trained_run  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def test_eval_scores_every_item_and_writes_json_and_csv(trained_run):
    project, run = trained_run
    done = run_frame(
        [
            "eval",
            str(run),
            "--per-item",
            "--name",
            "held",
            "--device",
            "cpu",
            "data.dataset.num_samples=5",
            "data.dataset.seed=3",
        ],
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((run / "eval" / "held.json").read_text())
    assert result["items"] == 5  # every item, no split
    assert result["epoch"] == 2 and result["checkpoint"].endswith("best.pt")
    assert result["data"]["dataset"]["seed"] == 3
    assert set(result["metrics"]) >= {"loss", "dice", "dice/liver"}
    rows = list(csv.DictReader(open(run / "eval" / "held.csv")))
    assert [r["item"] for r in rows] == ["0", "1", "2", "3", "4"] and "dice/spleen" in rows[0]
    assert f"{result['metrics']['dice']:.4g}" in done.stdout


def test_eval_of_a_sweep_evaluates_each_member(trained_run, tmp_path):
    _, run = trained_run
    for member in ("optimizer.lr=0.1", "optimizer.lr=0.01"):
        shutil.copytree(run, tmp_path / "sweep" / member, ignore=shutil.ignore_patterns("eval"))
    done = run_frame(["eval", str(tmp_path / "sweep"), "--device", "cpu", "data.dataset.num_samples=2"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for member in ("optimizer.lr=0.1", "optimizer.lr=0.01"):
        assert (tmp_path / "sweep" / member / "eval" / "SyntheticOrgans.json").is_file()
        assert member in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "{tmp}/nowhere"], "is not a directory"),
        (["eval", "{tmp}"], "holds no trained run"),
        (["eval", "{run}", "--checkpoint", "bset"], "Did you mean 'best'?"),
        (["eval", "{run}", "data.datset.root=x"], "Could not override 'data.datset.root'"),
        (["eval", "{run}", "evaluators=[dise]"], "Did you mean 'dice'?"),
        (["eval", "{run}", "--checkpoint", "{tmp}/broken.pt"], "unreadable"),
        (
            ["eval", "{run}", "data.batch_size=0"],
            "data.batch_size=0 is invalid: expected an integer >= 1.",
        ),  # was a traceback
        (
            ["eval"],
            "the following arguments are required: RUN_DIR\n",
        ),  # not "RUN_DIR, KEY=VALUE": overrides are optional
        (
            [
                "eval",
                "{run}",
                "+evaluators.f1={{_target_:torchmetrics.classification.MulticlassF1Score,num_classes:3}}",
            ],
            "evaluators.f1 (LibraryMetric) fails on output [2, 4, 16, 16, 16] float32, target [2, 4, 16, 16, 16] float32 "
            "(batch 1)",
        ),  # 4 output channels, num_classes 3: was torchmetrics' traceback
    ],
)
def test_eval_bad_input_exits_2_with_a_message(trained_run, tmp_path, args, message):
    _, run = trained_run
    (tmp_path / "broken.pt").write_bytes((run / "checkpoints" / "best.pt").read_bytes()[:5000])
    done = run_frame([a.format(tmp=tmp_path, run=run) for a in args], cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_load_model_in_a_fresh_interpreter_reproduces_the_best_validation_dice(trained_run):
    project, run = trained_run
    result = reproduce_best(run, project, "val/dice")
    assert result["again"] == pytest.approx(result["logged"], abs=1e-5)
    assert {"best", "last"} <= set(result["checkpoints"])


def test_load_run_refuses_a_directory_that_is_no_run(tmp_path):
    import frame
    from frame.core.errors import FrameError

    with pytest.raises(FrameError, match="not a run directory"):
        frame.load_run(tmp_path)


def test_data_test_is_scored_with_best_pt_after_training(tmp_path):
    from tests.conftest import TINY

    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "held.yaml").write_text(
        "# @package _global_\ndata:\n  test:\n    dataset:\n      _target_: frame.data.synthetic.SyntheticOrgans\n"
        "      labels: [liver, spleen, kidney_l, kidney_r]\n      num_samples: 2\n      size: [16, 16, 16]\n      seed: 5\n"
    )
    run_frame(
        ["train", "--config-dir", "conf", "experiment=held", "name=t", "logger=[jsonl]", *TINY], cwd=tmp_path, check=0
    )
    run = tmp_path / "outputs" / "t"
    record = json.loads((run / "run.json").read_text())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["test"]["items"] == 2 and record["test"]["test/dice"] == last["test/dice"]
    assert "test/dice" in run_frame(["runs", str(tmp_path / "outputs"), "--json"], cwd=tmp_path, check=0).stdout


def test_a_test_set_whose_labels_do_not_fit_the_model_is_refused_before_training(tmp_path):
    """Six organs in the test set, a model with five output channels: exit 2 naming the test batch,
    before an epoch is spent (not MONAI's AssertionError after training)."""
    from tests.conftest import TINY

    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "six.yaml").write_text(
        "# @package _global_\ndata:\n  test:\n    dataset:\n      _target_: frame.data.synthetic.SyntheticOrgans\n"
        "      labels: [liver, spleen, kidney_l, kidney_r, pancreas, bladder]\n      num_samples: 2\n"
        "      size: [16, 16, 16]\n      seed: 5\n"
    )
    result = run_frame(
        ["train", "--config-dir", "conf", "experiment=six", "name=t", "logger=[jsonl]", *TINY], cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "first test batch" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs" / "t" / "checkpoints").exists()


def test_a_relative_data_path_not_found_says_where_the_run_was_started(compose, tmp_path, monkeypatch):
    """`frame eval` from another directory than the project's: the datalist's relative path is not found."""
    import torch

    from frame.core.errors import FrameError
    from frame.trained.load import run_data

    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (started / "run" / ".hydra").mkdir(parents=True)
    elsewhere.mkdir()
    (started / "run" / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {started}\n")
    cfg = compose(["data=synthetic_classes"])
    cfg.data.dataset = {"_target_": "frame.data.datalist.Datalist", "path": "dataset.json"}
    monkeypatch.chdir(elsewhere)
    with pytest.raises(
        FrameError,
        match=f"dataset.json does not exist. Relative paths .* read from the current "
        f"directory, {elsewhere}; the run was started in {started}: run the command",
    ):
        run_data(started / "run", cfg, torch.device("cpu"))
    monkeypatch.chdir(started)  # from where it started: the plain message, no advice to go where one is
    with pytest.raises(FrameError) as error:
        run_data(started / "run", cfg, torch.device("cpu"))
    assert "Relative paths" not in str(error.value)


def test_eval_of_an_epoch_checkpoint_reproduces_the_validation_logged_for_it(tmp_path):
    """A classifier with a validation set of its own and a training augmentation: `frame eval` scores with the
    run's validation pipeline (data.val, the deterministic transforms), so epoch-N.pt gives epoch N's figures."""
    from tests.conftest import metrics

    val = "data.val={dataset: {_target_: frame.data.synthetic.SyntheticClasses, num_samples: 30, seed: 5}}"
    noise = "+data.sample_transforms=[{_target_: monai.transforms.RandGaussianNoise, prob: 1.0, std: 1.0}]"
    run_frame(
        [
            "train",
            "experiment=classify",
            "name=cls",
            "logger=[jsonl]",
            "data.dataset.num_samples=96",
            "data.batch_size=16",
            "trainer.epochs=2",
            val,
            noise,
        ],
        cwd=tmp_path,
        check=0,
    )
    run = tmp_path / "outputs" / "cls"
    logged = {r["epoch"]: r for r in metrics(run) if "val/accuracy" in r}
    for epoch in (1, 2):
        done = run_frame(
            ["eval", str(run), "--checkpoint", f"epoch-{epoch:04d}", "--name", f"e{epoch}", "--device", "cpu"],
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads((run / "eval" / f"e{epoch}.json").read_text())
        assert result["items"] == 30 and result["epoch"] == epoch
        assert result["metrics"]["accuracy"] == pytest.approx(logged[epoch]["val/accuracy"], abs=1e-6)
        assert result["metrics"]["loss"] == pytest.approx(logged[epoch]["val/loss"], abs=1e-5)
    done = run_frame(["eval", str(run), "--name", "other", "--device", "cpu", "data.val.dataset.seed=9"], cwd=tmp_path)
    assert (
        done.returncode == 0
        and json.loads((run / "eval" / "other.json").read_text())["data"]["val"]["dataset"]["seed"] == 9
    )
    done = run_frame(["eval", str(run), "data.dataset.num_samples=5"], cwd=tmp_path)
    assert (
        done.returncode == 2
        and "this run validates on data.val" in done.stderr
        and "data.val.dataset.<key>=" in done.stderr
    )


def test_eval_and_predict_of_a_split_run_score_the_validation_share(tmp_path):
    """A run without data.val validated on its split's share of data.dataset: `frame eval` scores those items,
    not all of data.dataset (epoch-N.pt gives epoch N's logged figures), says so, and `frame predict` names
    each item by its index in the dataset; pointing data.dataset elsewhere scores every item."""
    from frame.data.loading import split_indices
    from tests.conftest import metrics, run_frame

    train = ["experiment=classify", "name=split", "logger=[jsonl]", "data.dataset.num_samples=40"]
    run_frame(["train", *train, "trainer.epochs=2", "trainer.checkpoint_every_n_epochs=1"], cwd=tmp_path, check=0)
    run = tmp_path / "outputs" / "split"
    logged = {r["epoch"]: r for r in metrics(run) if "val/loss" in r}
    share = split_indices(40, 0.8, 0)[1]  # the classify experiment's split_ratio and seed
    for epoch in (1, 2):
        done = run_frame(["eval", str(run), "--checkpoint", f"epoch-{epoch:04d}", "--name", f"e{epoch}"], tmp_path)
        assert done.returncode == 0, done.stderr
        result = json.loads((run / "eval" / f"e{epoch}.json").read_text())
        assert result["items"] == len(share) == 8 and "validation share" in result["scored"]
        assert result["metrics"]["loss"] == pytest.approx(logged[epoch]["val/loss"], abs=1e-5)
        assert result["metrics"]["accuracy"] == pytest.approx(logged[epoch]["val/accuracy"], abs=1e-6)
        assert "validation share of data.dataset (8 of 40 items" in " ".join(done.stdout.split())
    other = run_frame(["eval", str(run), "--name", "all", "data.dataset.num_samples=12"], tmp_path, check=0)
    assert json.loads((run / "eval" / "all.json").read_text())["items"] == 12
    assert "every item of data.dataset" in " ".join(other.stdout.split())
    run_frame(["predict", str(run), "--output", "preds"], tmp_path, check=0)
    rows = list(csv.DictReader(open(tmp_path / "preds" / "predictions.csv")))
    assert [row["item"] for row in rows] == [f"item-{index:04d}" for index in share]
