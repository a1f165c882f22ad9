"""`frame train` takes a Hydra user's command lines: the user's own packages from the current
directory (as `python -m frame` does), `-m` anywhere on the line."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import frame_env

FRAME = Path(sys.executable).parent / "frame"  # the console script: its sys.path[0] is the venv's bin, not the cwd


def test_the_console_script_imports_the_users_package_and_takes_m_after_overrides(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text("from frame.models import MLP\n\n\nclass Net(MLP):\n    pass\n")
    result = subprocess.run([str(FRAME), "train", "experiment=classify", "model._target_=mypkg.models.Net",
                             "data.dataset.num_samples=32", "trainer.epochs=1", "logger=[jsonl]", "-m", "seed=0"],
                            cwd=tmp_path, env=frame_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    members = json.loads((tmp_path / "outputs" / "classify-sweep" / "sweep.json").read_text())["members"]
    assert [m["status"] for m in members] == ["complete"]
    saved = (tmp_path / "outputs" / "classify-sweep" / members[0]["run_dir"] / ".hydra" / "config.yaml").read_text()
    assert "_target_: mypkg.models.Net" in saved
