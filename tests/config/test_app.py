"""A user's own primary config: `--config-name` and a `train.yaml` in `--config-dir` are what runs,
with frame's Hydra settings (`hydra: frame`) when the config lists them."""

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
    assert hydra["run"]["dir"] == "outputs/${name}" and "preflight" in hydra["callbacks"]
    assert hydra["launcher"]["_target_"].endswith("FrameSequentialLauncher")
