"""frame.config.speedups: Hydra composes the same configs, and reports the same mistakes, with
and without the replacements (each `frame train --cfg ...` runs twice, in fresh processes)."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import frame_env

WITHOUT = (
    "import frame.config.speedups as speedups\n"
    "speedups.faster_composition = lambda: None\n"
)  # before frame.config.app takes the name
CLI = "import sys\nfrom frame.cli import main\nsys.argv[0] = 'frame'\nmain()\n"


def _train(args, cwd, faster: bool):
    code = CLI if faster else WITHOUT + CLI
    return subprocess.run(
        [sys.executable, "-c", code, "train", *args],
        cwd=cwd,
        env=frame_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _project(tmp_path):
    """A --config-dir whose primary config picks its optimizer by interpolating another choice,
    and a model file with a duplicate key."""
    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    (tmp_path / "conf" / "model").mkdir()
    (tmp_path / "conf" / "train.yaml").write_text(
        textwrap.dedent("""\
        defaults:
          - base_train
          - model: mlp
          - loss: cross_entropy
          - optimizer: ${model}_sgd
          - data: synthetic_classes
          - trainer: default
          - hydra: frame
          - _self_
        name: interpolated
        """)
    )
    (tmp_path / "conf" / "optimizer" / "mlp_sgd.yaml").write_text(
        "_target_: torch.optim.SGD\n_partial_: true\nlr: 5e-2\nmomentum: .9\n"
    )
    (tmp_path / "conf" / "model" / "twice.yaml").write_text(
        "_target_: frame.training.models.MLP\nhidden: 8\nhidden: 16\n"
    )
    (tmp_path / "conf" / "model" / "broken.yaml").write_text(
        "_target_: frame.training.models.MLP\nhidden: [8, 16\nx: 1\n"
    )
    return str(tmp_path / "conf")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--cfg", "job"], "_target_: monai.networks.nets.UNet"),
        (["--cfg", "hydra"], "FrameSequentialLauncher"),
        (["--cfg", "job", "experiment=classify", "optimizer.lr=1e-3", "trainer.epochs=3"], "lr: 0.001"),
        (["--cfg", "job", "--config-dir", "{conf}"], "lr: 0.05"),  # the interpolated defaults entry
    ],
)
@pytest.mark.slow
def test_the_same_config_with_and_without_the_speedups(args, expected, tmp_path):
    conf = _project(tmp_path)
    args = [a.format(conf=conf) for a in args]
    faster, plain = _train(args, tmp_path, faster=True), _train(args, tmp_path, faster=False)
    assert (faster.returncode, faster.stdout) == (plain.returncode, plain.stdout) == (0, plain.stdout)
    assert expected in faster.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model=twice"], ["found duplicate key hidden", 'twice.yaml", line 3, column 1']),
        (
            ["model=broken"],
            ["while parsing a flow sequence", 'broken.yaml", line 3, column 2'],
        ),  # libyaml words the rest
        (["trainer.epochs=abc"], ["trainer.epochs"]),
    ],
)
@pytest.mark.slow
def test_the_same_mistakes_reported_with_and_without_the_speedups(args, expected, tmp_path):
    args = ["--cfg", "job", "--config-dir", _project(tmp_path), *args]
    for result in _train(args, tmp_path, faster=True), _train(args, tmp_path, faster=False):
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert all(part in result.stderr for part in expected), result.stderr
