"""Read an offline W&B run file (`run-<id>.wandb`) back in tests.

The file is a LevelDB-style log: a 7-byte header `:W&B` + magic + version,
then 32 KiB blocks of records, each `crc32 | length | type` + payload, long
records split FIRST/MIDDLE/LAST, of `wandb.proto.wandb_internal_pb2.Record`
messages. In wandb 0.31 an offline run's history lives only there.
"""

import json
import struct
from pathlib import Path

_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path):
    """Yield every `wandb_internal_pb2.Record` in a `run-*.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    position, parts = _HEADER, []
    while position + _HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _HEADER:  # the writer pads the tail of a block
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _HEADER])
        position += _HEADER
        if kind == 0 and length == 0:
            continue
        parts.append(data[position : position + length])
        position += length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def history(path: Path) -> list[dict]:
    """The history rows of a `run-*.wandb` file: `{"_step": ..., "<metric>": value, ...}`, in order."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def run_record(path: Path):
    """The `Run` message (id, project, group, start time, ...) of a `run-*.wandb` file."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return record.run
    return None
