"""Atomic file writes: a file's new content appears whole or not at all.

`write_text_atomic` writes `.NAME.tmp<pid>` beside the target (same folder, so same file system)
and renames it over the target with os.replace: a crash mid-write leaves the old file (or none)
and at most a stale hidden temporary, never a half-written target. The pid in the temporary's
name keeps processes that write the same file from sharing a temporary.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str | bytes, *,
                      fsync: bool = False) -> Path:
    """Writes `text` (str: as UTF-8; bytes: as is) to `path` atomically, creating its folder;
    fsync=True also flushes the data to disk before the rename. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
