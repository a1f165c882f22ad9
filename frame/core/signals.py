"""The one owner of stop signals.

SIGTERM, SIGINT, SIGUSR2 (what SLURM sends before a time limit or on
preemption), SIGHUP (a closed terminal or a dropped ssh session) and SIGUSR1
only set a flag. The loop checks it after every step, writes a
checkpoint and exits with `frame.core.exits.EXIT_INTERRUPTED`. A SIGINT while a stop is already
pending (Ctrl-C twice) exits at once with EXIT_ABORTED: every checkpoint write
is atomic, so that cannot leave a torn file, only a temp file the next run removes.

The API is what a launcher needs and no more:

    stop = StopFlag().install()   # in the main thread; keeps the handlers it replaces; nests
    ...
    if stop.requested: ...        # stop.signal is the number of the first stop signal
    stop.restore()                # puts the replaced handlers (e.g. submitit's) back

`ignore_stop_signals()` is for DataLoader workers: the main process decides when
to stop, and shuts its workers down itself.
"""

import os
import signal
import threading
from collections.abc import Iterable

from frame.core.exits import EXIT_ABORTED, EXIT_INTERRUPTED

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGHUP, signal.SIGUSR1)


class StopFlag:
    """Turns the stop signals into a flag the training loop polls.

    `install()` does nothing outside the main thread (Python delivers signals
    only there); `requested` then stays False. Installs nest: the run installs the
    flag before start-up (imports, building, W&B) and the loop again; only the
    outermost `restore()` puts the replaced handlers back.
    """

    def __init__(self):
        self.signal: int | None = None  # the first stop signal received
        self._previous = {}
        self._depth = 0

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._depth += 1
            if self._depth == 1:
                for signum in STOP_SIGNALS:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        """Put the replaced handlers back (outermost call only). After a stop, a signal whose handler
        was the default (to die) exits 75 quietly instead: the process is on its way out with its
        checkpoint written, and a second SIGTERM during the loggers' or Hydra's teardown must not
        kill it with 143 or a traceback."""
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            for signum, handler in self._previous.items():
                signal.signal(signum, _exit_after_stop if self.requested and handler == signal.SIG_DFL else handler)
            self._previous.clear()

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.requested:
            os.write(2, b"\nframe: second SIGINT: exiting now; the last checkpoint written stays valid\n")
            os._exit(EXIT_ABORTED)
        if not self.requested:
            self.signal = signum
            os.write(
                2,
                f"\nframe: {name} received: stopping after this step with a checkpoint "
                f"(SIGINT again to exit at once)\n".encode(),
            )


def _exit_after_stop(signum, frame):
    os.write(
        2,
        f"\nframe: {signal.Signals(signum).name} again while exiting: exiting now; "
        f"the run had stopped already\n".encode(),
    )
    os._exit(EXIT_INTERRUPTED)


def forward(signum: int, pids: Iterable[int]) -> None:
    """Pass a stop signal on to child processes that are still alive.

    A child that leads its own process group (started with `start_new_session`, as the
    JSON-job runner and the local launcher start theirs) gets it with the whole group, so
    its DataLoader workers and ranks hear it too; any other child gets it alone.
    """
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)
        except ProcessLookupError:  # it ended meanwhile
            pass


_EARLY: StopFlag | None = None  # installed when a run claims its directory, adopted by the run


def install_early() -> None:
    """Catch stop signals from the moment a run claims its directory (`frame.core.run_lock.claim_early`):
    a SIGTERM while Hydra sets the job up or torch imports must not kill the process with its lock
    and a half-started run left behind. The run adopts the flag (`adopt_early`) and honours it."""
    global _EARLY
    if _EARLY is None:
        _EARLY = StopFlag().install()


def adopt_early() -> StopFlag:
    """The early flag, installed and with any stop it caught, or a newly installed one."""
    global _EARLY
    flag, _EARLY = _EARLY, None
    return flag if flag is not None else StopFlag().install()


def ignore_stop_signals() -> None:
    """Make this process (a DataLoader worker) ignore the stop signals; its parent handles them."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
