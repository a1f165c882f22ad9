"""A pytest plugin that counts the tests that start a process: `pytest -p scripts.count_processes ...`.

Each `subprocess.Popen` and `multiprocessing` start made while a test runs (its fixtures included) is
charged to the test; at the end one line says how many tests started any process and how many started
a Python interpreter (`frame` as a command, a helper script: the expensive kind, torch imported anew),
and the file named by FRAME_COUNT_PROCESSES (if set) gets one JSON object per test that started one.
Processes started by those processes are not seen.
"""

import json
import multiprocessing.process
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

_started: dict[str, list[str]] = defaultdict(list)
_current = {"test": None}


def _charge(kind: str) -> None:
    if _current["test"] is not None:
        _started[_current["test"]].append(kind)


_popen_init = subprocess.Popen.__init__
_process_start = multiprocessing.process.BaseProcess.start


def _counted_popen_init(self, args, *rest, **options):
    first = args if isinstance(args, str) else str(next(iter(args), ""))
    name = Path(first.split()[0] if first else "").name
    _charge("python" if first.startswith(sys.executable) or name.startswith("python") else name or "?")
    _popen_init(self, args, *rest, **options)


def _counted_start(self):
    _charge("multiprocessing")
    _process_start(self)


subprocess.Popen.__init__ = _counted_popen_init
multiprocessing.process.BaseProcess.start = _counted_start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current["test"] = item.nodeid
    try:
        return (yield)
    finally:
        _current["test"] = None


def pytest_terminal_summary(terminalreporter):
    python = [test for test, kinds in _started.items() if "python" in kinds]
    terminalreporter.write_line(
        f"count_processes: {len(_started)} tests started a process, {len(python)} of them a Python interpreter"
    )


def pytest_sessionfinish(session):
    """Each process of the run (pytest-xdist's workers too) adds its own tests to the file."""
    destination = os.environ.get("FRAME_COUNT_PROCESSES")
    if destination and _started:
        with open(destination, "a") as file:
            for test, kinds in sorted(_started.items()):
                file.write(json.dumps({"test": test, "started": kinds}) + "\n")
