"""The one owner of stop signals.

SIGTERM, SIGINT and SIGUSR2 (what SLURM sends before a time limit or on
preemption) only set a flag. The loop checks it after every step, writes a
checkpoint and exits with EXIT_INTERRUPTED. A second SIGINT exits at once;
checkpoint writes are atomic, so that cannot leave a torn file.
"""

import os
import signal
import threading

# EX_TEMPFAIL: interrupted, checkpoint written, run the same command again to continue.
EXIT_INTERRUPTED = 75
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


class StopFlag:
    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for signum in _HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signal == signal.SIGINT:
            os._exit(128 + signal.SIGINT)
        self.signal = signum
