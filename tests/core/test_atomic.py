"""frame.core.atomic: the one writer (the old file or the new one, never a torn one, no temp file left,
a full disk or a read-only folder an exit-2 error naming the path) and a command's planned outputs."""

import os

import pytest

from frame.core.atomic import Outputs, WriteError, confined, make_folder, write_file
from frame.core.errors import FrameError
from tests.faults import fill, read_only, small_disk


def test_write_file_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "run.json"
    write_file(path, "first, and longer\n")
    write_file(path, "second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "sweep.json"
    write_file(path, "old\n")
    with pytest.raises(TypeError):
        write_file(path, None)  # fails inside the write, after the temp file was opened
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]


@pytest.mark.parametrize("how", ["text", "by name"])
def test_a_full_disk_keeps_the_previous_file_whole_and_names_the_path(tmp_path, how):
    with small_disk(tmp_path / "disk", 256 * 1024) as disk:
        path = write_file(disk / "model.yaml", "old\n")
        fill(disk)
        big = "x" * 100_000
        content = big if how == "text" else (lambda tmp: tmp.write_text(big))
        with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device.*intact") as error:
            write_file(path, content)
        assert isinstance(error.value, FrameError)  # exit 2, one line, no traceback
        assert path.read_text() == "old\n"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "model.yaml"]  # no temp file left


def test_a_read_only_folder_is_a_write_error_naming_the_path(tmp_path):
    (tmp_path / "ro").mkdir()
    path = write_file(tmp_path / "ro" / "sweep.json", "old\n")
    with read_only(tmp_path / "ro"):
        with pytest.raises(WriteError, match="sweep.json: Read-only file system"):
            write_file(path, "new\n")
    assert path.read_text() == "old\n"


def test_other_names_get_the_same_bytes_before_the_main_one(tmp_path):
    write_file(tmp_path / "last.pt", b"new", also=[tmp_path / "best.pt"])
    assert (tmp_path / "best.pt").read_bytes() == b"new"
    assert os.stat(tmp_path / "best.pt").st_ino == os.stat(tmp_path / "last.pt").st_ino


def test_two_outputs_on_one_path_or_on_an_input_are_refused_before_writing(tmp_path):
    job = tmp_path / "job.json"
    job.write_text("{}")
    (tmp_path / "link.json").symlink_to(job)
    planned = Outputs([job])
    planned.add(tmp_path / "a_pred.nii.gz", "a.nii")
    with pytest.raises(FrameError, match="a.nii and a.nii.gz would both be written to .*a_pred.nii.gz"):
        planned.add(tmp_path / "." / "a_pred.nii.gz", "a.nii.gz")
    for spelling in (job, tmp_path / "sub" / ".." / "job.json", tmp_path / "link.json"):
        with pytest.raises(FrameError, match="is an input of this command"):
            planned.add(spelling)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json", "link.json"]


@pytest.mark.parametrize("name", ["../run", "/etc/x", "a/b", "", "..", "a\\b"])
def test_a_name_that_leaves_its_folder_is_refused(tmp_path, name):
    with pytest.raises(FrameError, match="--name .*expected a plain file name"):
        confined(tmp_path, name, "--name")
    assert confined(tmp_path, "test", "--name") == tmp_path / "test"


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(FrameError, match="out is not a folder"):
        make_folder(tmp_path / "out")
    assert (tmp_path / "out").read_text() == "mine"
