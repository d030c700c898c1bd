"""Small file helpers shared by the stages."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional


def write_json_atomic(path: Path, data: Any, *, indent: Optional[int] = None,
                      default: Optional[Callable[[Any], Any]] = None) -> None:
    """Write ``data`` as JSON so that readers see the old file or the whole new one, never
    a half-written one. The temporary name carries the process id, so data-loader workers
    filling the same cache at once do not write into each other's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(data, indent=indent, default=default))
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """``write_json_atomic`` for plain text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)
