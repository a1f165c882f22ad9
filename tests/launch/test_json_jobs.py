"""`frame run` and `Runner`: jobs in order or in parallel, bad input rejected before anything runs."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import metrics, run_frame
from tests.seed_project import edit_job, make_project

# The list of bad input: each is one short message naming file and key, exit 2, no run directory.
BAD = [
    ("malformed JSON", None, "config/job.json:3:"),
    (
        "a name found nowhere",
        lambda j: j["model"].update(name="TinyClasifier"),
        "model.name: 'TinyClasifier' is not a model",
    ),
    ("a name found twice in one tier", "twice", "'TinyClassifier' is defined more than once in the project"),
    (
        "a param the constructor does not take",
        lambda j: j["model"].update(depht=2),
        "model.depht: TinyClassifier takes no parameter 'depht'",
    ),
    ("a required param missing", lambda j: j["model"].pop("in_features"), "model: TinyClassifier needs 'in_features'"),
    ("a wrong type", lambda j: j["training"].update(epochs="ten"), "training.epochs: value 'ten'"),
    (
        "split_ratio outside (0, 1)",
        lambda j: j["training"].update(split_ratio=1.0),
        "training.split_ratio: 1.0 is invalid",
    ),
    ("a missing dataset root", lambda j: j["training"]["dataset"].update(root="./gone"), "training.dataset.root: "),
    (
        "labels the dataset cannot provide",
        lambda j: j["training"]["dataset"].update(labels=["red", "purple"]),
        "training.dataset.labels: Points cannot provide 'purple'",
    ),
    ("a job file that does not exist", "missing", "config/nope.json: no such job file"),
]


@pytest.mark.parametrize("case,change,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_naming_file_and_key(tmp_path, case, change, expected):
    job = make_project(tmp_path)
    if change is None:
        job.write_text('{\n  "name": "x",\n  "model": {"name": "TinyClassifier",, }\n}\n')
    elif change == "twice":
        (tmp_path / "src" / "Models" / "Copy.py").write_text("class TinyClassifier:\n    pass\n")
    elif change == "missing":
        job = job.with_name("nope.json")
    else:
        edit_job(job, change)
    result = run_frame(["run", "config/" + job.name], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "outputs").exists()


def test_a_different_project_runs_end_to_end(tmp_path):
    """Every component comes from the project in tmp_path, including an evaluator that shadows frame's."""
    job = make_project(tmp_path)
    run_frame(["run", str(job)], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "points"
    summary = json.loads((run_dir / "summary.json").read_text())  # the project's metric logger
    assert summary["status"] == "complete"
    assert summary["metrics"]["val/acc"] > 0.9  # the project's Accuracy (frame's would log val/accuracy)
    records = metrics(run_dir)
    assert [r["epoch"] for r in records if "val/acc" in r] == [1, 2, 3]
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "_target_: src.Models.TinyClassifier.TinyClassifier" in saved and f"project: {tmp_path}" in saved


def test_the_wandb_key_reaches_the_training_process_and_no_file(tmp_path):
    key = "f" * 40
    job = edit_job(make_project(tmp_path), lambda j: (j.update(wandb_api_key=key), j["training"].update(epochs=1)))
    run_frame(["run", str(job)], cwd=tmp_path, check=0, env={"WANDB_API_KEY": ""})
    assert json.loads((tmp_path / "outputs/points/summary.json").read_text())["wandb_key_length"] == 40
    for path in (tmp_path / "outputs").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


MAIN = """
from frame import Runner

jobs = {jobs!r}

if __name__ == '__main__':
    Runner(jobs=jobs, parallel={parallel}).run()
"""


def _two_jobs(tmp_path, second_fails=False):
    job = edit_job(make_project(tmp_path), lambda j: (j.update(name="first"), j["training"].update(epochs=1)))
    first, second = job.with_name("first.json"), job.with_name("second.json")
    job.rename(first)
    second.write_text(first.read_text().replace('"first"', '"second"'))
    if second_fails:
        edit_job(second, lambda j: j["model"].update(name="Broken"))
        (tmp_path / "src/Models/Broken.py").write_text(
            textwrap.dedent("""
            from torch import nn

            class Broken(nn.Linear):
                def __init__(self, in_features, num_classes):
                    super().__init__(in_features, num_classes)

                def forward(self, x):
                    raise RuntimeError("this model is broken")
        """)
        )
    return ["config/first.json", "config/second.json"]


@pytest.mark.parametrize("parallel", [1, 2])
def test_runner_api_runs_every_job_from_a_main_guard(tmp_path, parallel):
    jobs = _two_jobs(tmp_path)
    (tmp_path / "main.py").write_text(MAIN.format(jobs=jobs, parallel=parallel))

    result = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("first", "second"):
        assert (tmp_path / "outputs" / name / "checkpoints" / "last.pt").is_file()
    if parallel > 1:
        assert "[first] " in result.stdout and "[second] " in result.stdout


def test_a_failing_job_does_not_stop_the_next_and_sets_the_exit_code(tmp_path):
    jobs = _two_jobs(tmp_path, second_fails=True)
    jobs.reverse()  # the broken one first
    result = run_frame(["run", *jobs], cwd=tmp_path)
    assert result.returncode == 1
    assert "this model is broken" in result.stderr
    assert (tmp_path / "outputs/first/checkpoints/last.pt").is_file()
    assert "frame run: 1 of 2 jobs finished" in result.stderr and "failed (exit 1)" in result.stderr


def test_every_job_is_checked_before_the_first_runs(tmp_path):
    jobs = _two_jobs(tmp_path)
    edit_job(tmp_path / jobs[1], lambda j: j["training"].update(split_ratio=2))
    result = run_frame(["run", *jobs], cwd=tmp_path)
    assert result.returncode == 2 and "config/second.json: training.split_ratio" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_two_projects_with_the_same_module_names_run_in_one_command(tmp_path):
    """Both projects have src.Models.TinyClassifier; each job imports its own."""
    a = make_project(tmp_path / "a")
    b = make_project(
        tmp_path / "b",
        files={
            "src/Models/TinyClassifier.py": """
        from torch import nn

        class TinyClassifier(nn.Module):
            def __init__(self, in_features, num_classes, depth=2):
                super().__init__()
                self.net = nn.Sequential(*[nn.Linear(in_features, in_features) for _ in range(depth)],
                                         nn.Linear(in_features, num_classes))

            def forward(self, x):
                return self.net(x)
    """
        },
    )
    edit_job(a, lambda j: (j.update(name="a"), j["training"].update(epochs=1)))
    edit_job(b, lambda j: (j.update(name="b"), j["model"].update(depth=3), j["training"].update(epochs=1)))
    run_frame(["run", str(a), str(b)], cwd=tmp_path, check=0)
    assert (tmp_path / "outputs/a/checkpoints/last.pt").is_file() and (
        tmp_path / "outputs/b/checkpoints/last.pt"
    ).is_file()


def test_a_sweep_over_a_json_job(tmp_path):
    """-m works as for frame train, flags before or after the overrides; a sweep lives in outputs/<name>-sweep/ plus
    the overrides it fixes (trainer.epochs=1), and member dirs name only the swept key."""
    job = make_project(tmp_path)
    run_frame(["run", str(job), "trainer.epochs=1", "-m", "optimizer.lr=0.1,0.2"], cwd=tmp_path, check=0)
    for lr in ("0.1", "0.2"):
        assert (tmp_path / f"outputs/points-sweep+trainer.epochs=1/optimizer.lr={lr}/checkpoints/last.pt").is_file()
