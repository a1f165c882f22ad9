"""Faults made for real, shared by the tests of frame's writers and readers: a small tmpfs (a full
disk), a read-only mount, a FIFO. Mounting needs root; where it is refused the test is skipped."""

import contextlib
import os
import subprocess

import pytest


@contextlib.contextmanager
def small_disk(directory, size: int):
    """`directory` (made if missing, emptied) on a tmpfs of `size` bytes, unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)])
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@contextlib.contextmanager
def read_only(directory):
    """`directory` as it is, made read-only by a bind mount onto itself (root bypasses chmod)."""
    _mount(["--bind", str(directory), str(directory)])
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True, capture_output=True)
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def fill(directory) -> None:
    """Fill the file system holding `directory` to the last byte."""
    with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as file:
        while True:
            file.write(b"\0" * 4096)


def fifo(path):
    """A FIFO at `path`: a reader that opens it plainly blocks until a writer comes."""
    os.mkfifo(path)
    return path


def _mount(args) -> None:
    mounted = subprocess.run(["mount", *args], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount: {mounted.stderr.strip()}")
