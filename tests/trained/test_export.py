"""`frame export`: safetensors and the model's config, loadable by the docs' snippet without frame
(docs/reference/evaluation.md, "After training")."""

import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, run_frame
from tests.trained_run import trained_run  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def _readme_snippet() -> str:
    text = (REPO / "docs" / "reference" / "evaluation.md").read_text()
    return re.search(r"<!-- export-snippet[^>]*-->\n```python\n(.*?)```", text, re.S).group(1)


def test_readme_snippet_loads_the_export_without_frame(trained_run, tmp_path):
    import frame

    _, run = trained_run
    done = run_frame(["export", str(run), "-o", str(tmp_path / "export")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    x = torch.randn(1, 1, 16, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    expected = frame.load_model(run)(x)
    script = (
        "import sys; sys.modules['frame'] = None  # importing frame now fails\n"
        + _readme_snippet()
        + "import torch\ntorch.save(model(torch.load('x.pt')), 'y.pt')\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected)


def test_export_bad_input_exits_2(trained_run, tmp_path):
    _, run = trained_run
    done = run_frame(["export", str(run), "--format", "onnx"], cwd=tmp_path)
    assert done.returncode == 2 and "exports safetensors" in done.stderr
    done = run_frame(["export", str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 2 and "no checkpoint 'best'" in done.stderr
