"""Small files that frame rewrites whole (run.json, sweep.json, a metrics.jsonl cut back on resume).

Checkpoints have their own writer (`frame.training.checkpoint.atomic_write`: bytes, extra copies, a
directory fsync and a CheckpointError); this module stays free of torch so that the sweep
launchers can use it.
"""

import os
from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader, or a crash, sees the old file or the new one,
    never a torn one: a temp file beside it, flushed and fsynced, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

