"""The one exception type for user mistakes.

A `FrameError` is printed as its message alone (no traceback) and the process
exits with code 2. Everything else is a bug or a crash and keeps its traceback.
"""

import difflib
from collections.abc import Iterable

from frame.core.exits import EXIT_USER_ERROR


class FrameError(Exception):
    """A mistake in a job, a config or a command line that the user can fix.

    `key` optionally names the config key at fault (e.g. `data.split_ratio`),
    so a caller that knows where the key came from (a JSON job) can say so.
    """

    def __init__(self, *args, key: str | None = None):
        super().__init__(*args)
        self.key = key


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean X?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def exit_with(message: str) -> None:
    """Print a user error as one paragraph on stderr and exit with code 2."""
    import sys

    sys.stderr.write(f"frame: error: {message.strip()}\n")
    sys.exit(EXIT_USER_ERROR)
