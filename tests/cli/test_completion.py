"""Tab completion of `frame train` through Hydra's bash completion, queried as bash does: the
script `frame train -sc install=bash` prints is sourced and its function called with the line
typed so far (COMP_LINE, COMP_CWORD); COMPREPLY holds the answers."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _complete(line: str, tmp_path) -> list[str]:
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    script = (
        f'eval "$(frame train -sc install=bash)"\n'
        f'COMP_LINE="{line}"; COMP_POINT={len(line)}; COMP_CWORD={cword}\n'
        f'hydra_bash_completion\nprintf "%s\\n" "${{COMPREPLY[@]}}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Error" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_groups_options_and_keys_of_frame_train(tmp_path):
    assert (BIN / "frame").exists()
    assert _complete("frame train optim", tmp_path) == ["optimizer.", "optimizer="]
    assert _complete("frame train optimizer=", tmp_path) == ["optimizer=adam", "optimizer=adamw", "optimizer=sgd"]
    assert "optimizer.lr=" in _complete("frame train seed=1 optimizer.l", tmp_path)


def test_install_typed_at_a_prompt_says_how_to_load_the_script(capsys, monkeypatch):
    from frame.cli import main

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    for argv in (["train", "-sc", "install=bash"], ["-sc", "install=bash"]):
        main(argv)
        out = capsys.readouterr().out
        assert 'eval "$(frame -sc install=bash)"' in out and "hydra_bash_completion" not in out
    main(["-sc", "install=fish"])
    assert "frame -sc install=fish | source" in capsys.readouterr().out
