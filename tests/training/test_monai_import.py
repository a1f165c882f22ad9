"""frame.training.monai_import: a training that imports MONAI does not import Optuna; Optuna stays usable."""

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import TINY, run_frame

pytestmark = pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="Optuna is not installed")


def _imported(importtime_log: str) -> set[str]:
    """The modules a `python -X importtime` run imported (top-level names)."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime_log.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_a_monai_training_does_not_import_optuna(tmp_path):
    result = run_frame(
        ["train", *TINY, "trainer.epochs=1", "logger=[jsonl]", "name=organs"],
        cwd=tmp_path,
        env={"PYTHONPROFILEIMPORTTIME": "1"},
        check=0,
    )
    imported = _imported(result.stderr)
    assert {"monai", "torch"} <= imported  # the default experiment's UNet: MONAI was imported, and trained
    assert not imported & {"optuna", "alembic", "sqlalchemy"}
    assert (tmp_path / "outputs" / "organs" / "checkpoints" / "last.pt").is_file()


def test_monai_sees_optuna_and_a_later_import_is_the_real_one():
    probe = (
        "import sys\n"
        "from frame.training.monai_import import defer_optuna\n"
        "defer_optuna()\n"
        "import monai\n"
        "print('optuna' in sys.modules)\n"
        "from monai.apps.auto3dseg import hpo_gen\n"
        "import optuna\n"
        "print(hpo_gen.has_optuna, type(optuna.create_study).__name__, hpo_gen.optuna.create_study is optuna.create_study,"
        " monai.__loader__ is monai.__spec__.loader and type(monai.__loader__).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["False", "True", "function", "True", "SourceFileLoader"]
