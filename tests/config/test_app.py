"""A user's own primary config: `--config-name` and a `train.yaml` in `--config-dir` are what runs,
with frame's Hydra settings (`hydra: frame`) when the config lists them."""

import pytest
import yaml

from frame.config.compose import compose
from tests.conftest import run_frame

# A primary config of a user's own: frame's groups, frame's Hydra settings, its own name and values.
OWN = """\
defaults:
  - base_train
  - model: mlp
  - loss: cross_entropy
  - optimizer: sgd
  - data: synthetic_classes
  - trainer: default
  - evaluators: [accuracy]
  - logger: [jsonl]
  - hydra: frame
  - _self_

name: {name}
data:
  dataset: {{num_samples: 64}}
trainer:
  epochs: 1
  monitor: val/accuracy
"""


def _job(result) -> dict:
    return yaml.safe_load(result.stdout)


@pytest.mark.slow
def test_a_train_yaml_in_config_dir_is_the_primary_config(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.yaml").write_text(OWN.format(name="mine"))
    job = _job(run_frame(["train", "--config-dir", "configs", "--cfg", "job"], cwd=tmp_path, check=0))
    assert job["name"] == "mine" and job["model"]["_target_"] == "frame.training.models.MLP"
    assert "torch.optim.SGD" in job["optimizer"]["_target_"]
    assert compose([], config_dir=str(tmp_path / "configs")).name == "mine"  # what `frame check` / `frame run` compose
    run_frame(["train", "--config-dir", "configs"], cwd=tmp_path, check=0)  # it trains, where frame puts runs
    assert (tmp_path / "outputs" / "mine" / "run.json").is_file()


def test_config_name_picks_a_primary_config_with_frames_hydra_settings(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text(OWN.format(name="other"))
    args = ["train", "--config-dir", "configs", "--config-name", "mine"]
    assert _job(run_frame([*args, "--cfg", "job"], cwd=tmp_path, check=0))["name"] == "other"
    hydra = _job(run_frame([*args, "--cfg", "hydra"], cwd=tmp_path, check=0))["hydra"]
    assert hydra["run"]["dir"].startswith("outputs/${name}") and "preflight" in hydra["callbacks"]
    assert hydra["launcher"]["_target_"].endswith("FrameSequentialLauncher")


def _frame(argv, capsys, monkeypatch, cwd) -> tuple[int, str, str]:
    """`frame ARGV` in this process: (exit code, stdout, stderr)."""
    from frame.cli import main

    monkeypatch.chdir(cwd)
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_local_other_picks_local_other_yaml(tmp_path, capsys, monkeypatch):
    (tmp_path / "cd" / "local").mkdir(parents=True)
    (tmp_path / "cd" / "local" / "other.yaml").write_text("data: {num_workers: 3}\n")
    code, out, err = _frame(
        ["train", "--config-dir", "cd", "local=other", "--cfg", "job"], capsys, monkeypatch, tmp_path
    )
    assert code == 0, err
    assert yaml.safe_load(out)["data"]["num_workers"] == 3


def test_a_misspelt_key_gets_a_did_you_mean_not_hydras_plus_advice(tmp_path, capsys, monkeypatch):
    code, _, err = _frame(["train", "trainer.epoch=3", "--cfg", "job"], capsys, monkeypatch, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert "trainer.epoch is not a key of trainer. Did you mean 'epochs'?" in err and "+trainer" not in err
    code, _, err = _frame(["train", "model.chanels=[4]", "--cfg", "job"], capsys, monkeypatch, tmp_path)
    assert code == 2 and "Did you mean 'channels'?" in err
    assert "+model.chanels=[4]" in err  # a component takes new constructor arguments with +


def test_an_unknown_preset_lists_the_options_without_hydras_search_path(tmp_path, capsys, monkeypatch):
    code, _, err = _frame(["train", "model=nonexistent", "--cfg", "job"], capsys, monkeypatch, tmp_path)
    assert code == 2 and "Could not find 'model/nonexistent'" in err
    assert "unet3d" in err and "mlp" in err and "search path" not in err and "provider=" not in err


@pytest.mark.parametrize(
    "command, said",
    [
        (["train", "lr_scheduler=null"], "To run without lr_scheduler, write ~lr_scheduler"),
        (["check", "experiment=classify", "lr_scheduler=null"], "To run without lr_scheduler, write ~lr_scheduler"),
        (["train", "model=null", "+model={_target_: x.Y}"], "~model '+model={_target_: ...}'"),
        (["train", "model=3"], "model=3: model is a config group"),
        (["train", "-m", "experiment=classify", "lr_scheduler=null,cosine"], "A sweep cannot leave a group out"),
    ],
)
def test_a_config_group_given_null_or_a_number_names_the_override_and_its_options(tmp_path, command, said):
    """Hydra refuses these with a bare ValueError and a traceback that names neither the override nor the way out."""
    result = run_frame(command, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    group = "model" if "model" in said else "lr_scheduler"
    options = "(mlp, unet3d)" if group == "model" else "(cosine, multistep, plateau, warmup, warmup_cosine)"
    assert f"{group} is a config group; it takes the name of one of its options {options}" in result.stderr
    assert said in result.stderr
    assert not list(tmp_path.glob("outputs/*/*.json"))  # nothing ran


def test_the_advised_tilde_drops_a_group_an_experiment_picks(tmp_path):
    advised = run_frame(
        ["train", "experiment=classify", "lr_scheduler=cosine", "~lr_scheduler", "--cfg", "job"], tmp_path
    )
    assert advised.returncode == 0 and "\nlr_scheduler: null\n" in advised.stdout
