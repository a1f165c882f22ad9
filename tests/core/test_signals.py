"""StopFlag: stop signals only set a flag; a second SIGINT exits at once."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from frame.core.exits import EXIT_ABORTED
from frame.core.signals import STOP_SIGNALS, StopFlag


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_stop_signal_sets_the_flag_and_restore_puts_the_old_handler_back(signum):
    seen = []
    previous = signal.signal(signum, lambda *_: seen.append("old handler"))
    try:
        stop = StopFlag().install()
        assert not stop.requested
        os.kill(os.getpid(), signum)
        assert stop.requested and stop.signal == signum and not seen
        stop.restore()
        os.kill(os.getpid(), signum)
        assert seen == ["old handler"]
    finally:
        signal.signal(signum, previous)


def test_later_signals_keep_the_first_one():
    stop = StopFlag().install()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGUSR2
    finally:
        stop.restore()


def _python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_second_sigint_exits_at_once():
    result = _python("""
        import os, signal, time
        from frame.core.signals import StopFlag
        stop = StopFlag().install()
        os.kill(os.getpid(), signal.SIGINT)
        print("flag", stop.requested, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
        print("still running")
    """)
    assert result.returncode == EXIT_ABORTED == 130
    assert result.stdout.split() == ["flag", "True"]
    assert (
        "SIGINT received: stopping after this step" in result.stderr and "second SIGINT: exiting now" in result.stderr
    )


def test_a_first_sigterm_then_sigint_still_exits_at_once():
    result = _python("""
        import os, signal, time
        from frame.core.signals import StopFlag
        StopFlag().install()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    """)
    assert result.returncode == EXIT_ABORTED


def test_workers_ignore_stop_signals():
    result = _python("""
        import os, signal
        from frame.core.signals import ignore_stop_signals
        ignore_stop_signals()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
            os.kill(os.getpid(), signum)
        print("alive")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "alive"


def test_after_a_stop_a_signal_that_would_kill_exits_75_quietly_and_other_handlers_come_back():
    result = _python("""
        import os, signal, time
        from frame.core.signals import StopFlag
        signal.signal(signal.SIGUSR1, lambda *_: print("own handler", flush=True))
        stop = StopFlag().install()
        os.kill(os.getpid(), signal.SIGTERM)
        stop.restore()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        print("still running")
    """)
    assert result.returncode == 75, result.stderr
    assert result.stdout.splitlines()[0] == "own handler" and "still running" not in result.stdout
    assert "SIGTERM again while exiting" in result.stderr


def test_without_a_stop_restore_puts_the_default_back():
    result = _python("""
        import os, signal, time
        from frame.core.signals import StopFlag
        StopFlag().install().restore()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    """)
    assert result.returncode == -signal.SIGTERM
