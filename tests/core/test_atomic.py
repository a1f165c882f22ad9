"""frame.core.atomic.replace_text: the old file or the new one, never a torn one, and no temp file left."""

import pytest

from frame.core.atomic import replace_text


def test_replace_text_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "run.json"
    replace_text(path, "first, and longer\n")
    replace_text(path, "second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "sweep.json"
    replace_text(path, "old\n")
    with pytest.raises(TypeError):
        replace_text(path, None)  # fails inside the write, after the temp file was opened
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]
