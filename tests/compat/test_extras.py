"""The dependency set: optional features behind extras, a missing extra is exit 2 with the pip command,
and nothing pins what users' own stacks hold (SQLAlchemy 2 installs beside frame)."""

import re
import subprocess
import sys
import tomllib

import pytest

from frame.compat.extras import EXTRAS, require
from frame.core.errors import FrameError
from tests.conftest import REPO, frame_env


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_core_dependencies_pin_nothing_of_a_database_stack_and_optional_features_are_extras():
    core = {_name(r): r for r in _project()["dependencies"]}
    extras = _project()["optional-dependencies"]
    assert not {"sqlalchemy", "alembic", "hydra-optuna-sweeper", "optuna"} & set(core)
    assert not {"matplotlib", "nibabel", "safetensors", "tensorboard"} & set(core)
    assert [_name(r) for r in extras["optuna"]] == ["optuna"] and ">=4" in extras["optuna"][0]
    assert set(re.findall(r"\[(.*)\]", extras["all"][0])[0].split(",")) == {e for e, _ in EXTRAS.values()}
    # upper caps only on the dependencies whose private API frame/compat fences (and the plugin it subclasses)
    capped = {name for name, r in core.items() if "<" in r}
    assert capped == {"hydra-core", "omegaconf", "submitit", "hydra-submitit-launcher"}
    assert all((REPO / "frame" / "compat" / f"{name}.py").is_file() for name in ("hydra", "submitit"))


def test_a_missing_extra_names_the_pip_command():
    with pytest.raises(FrameError, match=r"frame plot needs matplotlib.*pip install 'frame-launcher\[plot\]'"):
        require("matplotlib.not_a_module", "frame plot")
    assert require("json", "anything").dumps(1) == "1"  # a present module comes back as itself


@pytest.mark.slow
def test_a_search_without_optuna_installed_exits_2_with_the_pip_command(tmp_path):
    """Optuna made unimportable in the frame process (None in sys.modules is Python's own 'not here')."""
    code = "import sys; sys.modules['optuna'] = None; sys.argv[0] = 'frame'; from frame.cli import main; main()"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "train",
            "-m",
            "experiment=classify",
            "hparams_search=classify_optuna",
            "trainer.epochs=1",
        ],
        cwd=tmp_path,
        env=frame_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "pip install 'frame-launcher[optuna]'" in result.stderr and "Traceback" not in result.stderr
