"""Small file helpers shared by the stages."""
from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` when the block ends
    without an error, removed otherwise. Readers see the old file or the whole new one, never a
    half-written one; the temporary name carries the process id, so data-loader workers filling
    the same cache at once do not write into each other's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any, *, indent: Optional[int] = None,
                      default: Optional[Callable[[Any], Any]] = None) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, default=default))


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def free_space(folder: Path) -> int:
    """Bytes free for this user on the file system holding ``folder``. Writers look it up
    through this module (``files.free_space``), so a test can simulate a full disk by
    replacing this one function."""
    return shutil.disk_usage(folder).free


def is_disk_full(err: BaseException) -> bool:
    """Whether an error from a write is the disk being full: an OSError with ENOSPC, or what
    h5py and torch.save make of it (their messages carry the C library's text or errno)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left" in text or "Disk quota exceeded" in text or f"errno = {errno.ENOSPC}," in text
