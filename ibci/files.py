"""Atomic file writes: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` so that readers see the old file or the whole new one, never a part.

    The temp file is beside the target, so the rename stays on one file
    system and is atomic, and its name is unique, so concurrent writers of one
    target never share it. It is created as open() creates any file (mode
    0o666 less the umask), so the result has the mode a plain write would
    give; a failed write leaves neither the target nor the temp file.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # "x" never truncates a file that is not ours; outside the try, as a failed open leaves nothing to remove.
    f = open(tmp, "xb")
    try:
        with f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Suppressed: the folder may be gone by now, and the error to report is the first one.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """`obj` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")
