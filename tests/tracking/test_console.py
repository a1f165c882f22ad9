"""The console: a progress bar on a TTY, plain lines without one, a summary at the end."""

import os
import pty
import select
import time

import pytest

from tests.conftest import TINY, run_frame, start_frame


def test_without_a_tty_progress_is_plain_log_lines(tmp_path):
    args = [
        "experiment=classify",
        "name=classify",
        "data.dataset.num_samples=64",
        "trainer.epochs=2",
        "trainer.log_every_n_steps=1",
    ]
    result = run_frame(["train", *args, "logger.console.interval_s=0"], cwd=tmp_path, check=0)
    out = result.stdout
    assert "└── " in out and "_target_: 'frame.training.models.MLP'" in out  # the config tree
    lines = [line for line in out.splitlines() if "samples/s" in line]
    assert len(lines) >= 4 and all("loss" in line and "lr" in line and "[frame][INFO]" in line for line in lines)
    assert "\x1b[" not in out  # no escape codes in a log file
    assert "status" in out and "complete" in out and "checkpoints" in out
    assert "samples/s" in (tmp_path / "outputs" / "classify" / "train.log").read_text()


@pytest.mark.slow
def test_on_a_tty_a_progress_bar_and_a_summary(tmp_path):
    primary, secondary = pty.openpty()
    process = start_frame(
        ["train", *TINY, "trainer.epochs=3", "data.dataset.num_samples=16"],
        tmp_path,
        env={"COLUMNS": "160", "LINES": "50", "TERM": "xterm-256color"},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        text=False,
    )
    os.close(secondary)
    chunks, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    assert process.wait(timeout=30) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "epoch 1/3" in out and "samples/s" in out and "━" in out  # rich's bar
    assert "status" in out and "complete" in out
