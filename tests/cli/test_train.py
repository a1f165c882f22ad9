"""`frame train` takes a Hydra user's command lines: the user's own packages from the current
directory (as `python -m frame` does), `-m` anywhere on the line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import frame_env

FRAME = Path(sys.executable).parent / "frame"  # the console script: its sys.path[0] is the venv's bin, not the cwd


@pytest.mark.slow
def test_the_console_script_imports_the_users_package_and_takes_m_after_overrides(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(
        "from frame.training.models import MLP\n\n\nclass Net(MLP):\n    pass\n"
    )
    result = subprocess.run(
        [
            str(FRAME),
            "train",
            "experiment=classify",
            "name=classify",
            "model._target_=mypkg.models.Net",
            "data.dataset.num_samples=32",
            "trainer.epochs=1",
            "logger=[jsonl]",
            "-m",
            "seed=0",
        ],
        cwd=tmp_path,
        env=frame_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    members = json.loads((tmp_path / "outputs" / "classify-sweep" / "sweep.json").read_text())["members"]
    assert [m["status"] for m in members] == ["complete"]
    saved = (tmp_path / "outputs" / "classify-sweep" / members[0]["run_dir"] / ".hydra" / "config.yaml").read_text()
    assert "_target_: mypkg.models.Net" in saved
    for after in (
        ["eval", "outputs/classify-sweep"],
        ["predict", f"outputs/classify-sweep/{members[0]['run_dir']}", "--output", "p"],
    ):
        done = subprocess.run(
            [str(FRAME), *after], cwd=tmp_path, env=frame_env(), capture_output=True, text=True, timeout=300
        )  # rebuilding the model imports mypkg from the current directory too
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "p" / "predictions.csv").is_file()


@pytest.mark.slow
def test_debug_fast_runs_two_batches_under_outputs_debug_and_starts_over_each_time(tmp_path):
    """lightning-hydra-template's `debug=fast`: one epoch of 2 batches and 1 validation batch, no W&B
    even where the experiment asks for it, in outputs/debug/; a second run moves the first aside."""
    from tests.conftest import metrics, run_frame

    experiment = tmp_path / "configs" / "experiment" / "tracked.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text("# @package _global_\ndefaults:\n  - classify\n  - override /logger: [jsonl, wandb]\n")
    args = ["train", "--config-dir", "configs", "experiment=tracked", "debug=fast"]
    for _ in range(2):
        run_frame(args, cwd=tmp_path, check=0, env={"WANDB_MODE": "offline"})
    run_dir = tmp_path / "outputs" / "debug" / "classify"
    assert [r["step"] for r in metrics(run_dir) if "val/loss" in r] == [2]
    assert len(list((tmp_path / "outputs" / "debug").glob("classify.*"))) == 1  # the first run, moved aside
    assert not list(tmp_path.rglob("wandb")) and not (tmp_path / "outputs" / "classify").exists()


def test_debug_overfit_trains_and_validates_on_the_same_batches(tmp_path):
    from tests.conftest import run_frame

    shown = run_frame(["train", "experiment=classify", "debug=overfit", "--cfg", "all"], cwd=tmp_path, check=0).stdout
    assert "overfit_batches: 2" in shown and "dir: outputs/debug/${name}" in shown


@pytest.mark.slow
def test_the_same_command_continues_its_run_and_a_changed_one_starts_its_own(tmp_path):
    """Run identity: the README's rule ("Which run a command continues"), command by command."""
    from tests.conftest import run_frame

    base = ["train", "experiment=classify", "data.dataset.num_samples=64", "trainer.epochs=1", "logger=[jsonl]"]
    first = run_frame(base, cwd=tmp_path, check=0)
    own = "outputs/classify+data.dataset.num_samples=64,trainer.epochs=1"
    assert f"frame: a new run in {own}\n" in first.stdout
    assert json.loads((tmp_path / own / "run.json").read_text())["status"] == "complete"
    trained = (tmp_path / own / "metrics.jsonl").read_text()

    again = run_frame([*base, "data.num_workers=0", "logger=[jsonl,console]"], cwd=tmp_path, check=0)  # how, not what
    assert f"frame: continuing the run in {own}\n" in again.stdout
    assert (tmp_path / own / "metrics.jsonl").read_text() == trained  # finished: nothing trained again

    other = run_frame([*base, "optimizer.lr=0.01"], cwd=tmp_path, check=0)
    changed = "outputs/classify+data.dataset.num_samples=64,optimizer.lr=0.01,trainer.epochs=1"
    assert f"frame: a new run in {changed}\n" in other.stdout
    assert (tmp_path / changed / "checkpoints" / "last.pt").is_file()

    table = run_frame(["runs", "--json"], cwd=tmp_path, check=0)
    carried = {row["run"]: row["overrides"] for row in json.loads(table.stdout)}
    assert carried[changed.removeprefix("outputs/")] == [
        "data.dataset.num_samples=64",
        "optimizer.lr=0.01",
        "trainer.epochs=1",
    ]

    # name= picks the directory: the way to continue a run for more epochs; the resume guard still protects it
    pinned = [*base[:3], "logger=[jsonl]", "name=pinned"]
    run_frame([*pinned, "trainer.epochs=1"], cwd=tmp_path, check=0)
    longer = run_frame([*pinned, "trainer.epochs=2"], cwd=tmp_path, check=0)
    assert "frame: continuing the run in outputs/pinned\n" in longer.stdout
    assert json.loads((tmp_path / "outputs/pinned/run.json").read_text())["epochs"] == 2
    refused = run_frame([*pinned, "trainer.epochs=3", "model.hidden=[8]"], cwd=tmp_path)
    assert refused.returncode == 2 and "model.hidden" in refused.stderr and "Traceback" not in refused.stderr
