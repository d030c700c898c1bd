"""Image-level label files from other tools, so a training split needs no masks.

Two formats:
- text: one image per line, ``id cls cls ...``; classes by name or by index (1..K);
- ``cls_labels.npy`` (AffinityNet/IRN): a dict id -> K-vector of 0/1 over the
  foreground classes; IRN stores ids as integers (2007000032 for 2007_000032).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError
from ..io.safe_pickle import safe_load


def _voc_id_from_int(key: int) -> str:
    s = str(key)
    return f"{s[:4]}_{s[4:]}" if len(s) == 10 else s


def read_label_file(path: Path, class_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image-level label file not found: {path}")
    if path.suffix == ".npy":
        return _read_npy(path, class_names)
    return _read_text(path, class_names)


def _read_text(path: Path, class_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    index = {name: i for i, name in enumerate(class_names)}
    out: dict[str, tuple[int, ...]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        classes = []
        for tok in parts[1:]:
            if tok.isdigit() and 1 <= int(tok) < len(class_names):
                classes.append(int(tok))
            elif tok in index and index[tok] > 0:
                classes.append(index[tok])
            else:
                raise DatasetError(
                    f"{path}:{lineno}: unknown class {tok!r}; expected a name or index 1..{len(class_names) - 1}"
                )
        out[parts[0]] = tuple(sorted(set(classes)))
    return out


def _read_npy(path: Path, class_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    data = safe_load(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a dict id -> label vector (cls_labels.npy), got {type(data).__name__}")
    k = len(class_names) - 1
    out: dict[str, tuple[int, ...]] = {}
    for key, vec in data.items():
        arr = np.asarray(vec).reshape(-1)
        if arr.shape[0] != k:
            raise DatasetError(f"{path}: entry {key!r} has {arr.shape[0]} classes, the dataset has {k}")
        image_id = _voc_id_from_int(key) if isinstance(key, (int, np.integer)) else str(key)
        out[image_id] = tuple(int(i) + 1 for i in np.flatnonzero(arr > 0.5))
    return out
