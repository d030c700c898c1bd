"""DSRG cue pickles as DSRG's ``generate_train_gt.py`` writes them, for tests.

``write_dsrg_cues(pickle_path, list_path, ids)`` writes ``localization_cues-sal.pickle`` (a dict
``'%i_labels' % idx`` -> the image's classes, background 0 included, and ``'%i_cues' % idx`` ->
``np.where`` of a bool (num_classes, 41, 41) cue volume, i.e. a tuple of three int arrays;
``pickle.dump(..., protocol=2)``) and the published code's ``input_list.txt`` (``IMAGE.jpg
INDEX`` lines) whose second column is that ``idx``. It returns, per image id, the seed map
the published loader (hustvl/DGCN ``dataset.py``) makes of those cues, decoded here on its
own: each class's cue pixels written in turn, in increasing class index, so a pixel cued for
two classes ends with the higher one.

Indices are shuffled (not the line order, not the split order), every image gets pixels cued
for two classes (background and a class, and two classes when it has two), and by default
the pickle is written the way Python 2 wrote it (``py2=True``: strings as byte strings,
numpy's globals under ``numpy.core``), which is what DSRG's files are.
"""
from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

GRID = 41


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol 2 as Python 2 writes it: ``str`` and ``bytes`` as byte strings (BINSTRING),
    numpy's reconstructors under their Python 2 module ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", None) or pickle.whichmodule(obj, name)
        name = name or obj.__qualname__
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def dumps_py2(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def published_decode(cue_volume: np.ndarray) -> np.ndarray:
    """The published loader's label map of a (num_classes, 41, 41) bool cue volume."""
    label = np.full(cue_volume.shape[1:], 255, dtype=np.uint8)
    for c in range(cue_volume.shape[0]):  # increasing class index: the last write wins
        label[cue_volume[c]] = c
    return label


def _blob(rng: np.random.Generator, grid: int) -> np.ndarray:
    mask = np.zeros((grid, grid), dtype=bool)
    h, w = rng.integers(3, 12, size=2)
    y, x = rng.integers(0, grid - h), rng.integers(0, grid - w)
    mask[y : y + h, x : x + w] = True
    return mask


def write_dsrg_cues(
    path: Path,
    list_path: Path,
    ids: Sequence[str],
    num_classes: int = 21,
    rng: Optional[np.random.Generator] = None,
    *,
    labels: Optional[Mapping[str, Sequence[int]]] = None,
    py2: bool = True,
    list_style: str = "mixed",
) -> dict[str, np.ndarray]:
    """Write a DSRG cue pickle for ``ids`` at ``path`` and its ``input_list.txt`` at
    ``list_path``; return id -> (41, 41) uint8 seed map as the published loader reads it.

    ``labels`` (id -> foreground classes 1..num_classes-1) fixes each image's classes, e.g. to
    a dataset's image labels; else each image gets one or two random classes. ``list_style``:
    ``plain`` (``2008_007028.jpg 0``), ``jpeg_dir`` (``/JPEGImages/2008_007028.jpg 0``) or
    ``mixed`` (alternating).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    ids = list(ids)
    indices = rng.permutation(len(ids)) + 3  # shuffled, and never the line number
    cues: dict[str, object] = {}
    expected: dict[str, np.ndarray] = {}
    lines = []
    for n, (image_id, idx) in enumerate(zip(ids, indices)):
        if labels is not None:
            fg = sorted(int(c) for c in labels[image_id])
        else:
            k = min(int(rng.integers(1, 3)), num_classes - 1)
            fg = sorted(int(c) for c in rng.choice(np.arange(1, num_classes), size=k, replace=False))
        volume = np.zeros((num_classes, GRID, GRID), dtype=bool)
        volume[0] = rng.random((GRID, GRID)) < 0.3  # background cues, scattered
        for c in fg:
            volume[c] = _blob(rng, GRID)
            volume[c][rng.integers(0, GRID), rng.integers(0, GRID)] = True
        if fg:  # a pixel cued as background and as a class, and (with two classes) as both classes
            y, x = np.argwhere(volume[fg[0]])[0]
            volume[0][y, x] = True
        if len(fg) >= 2:
            y, x = np.argwhere(volume[fg[0]])[-1]
            volume[fg[1]][y, x] = True
        cues["%i_labels" % idx] = np.array([0, *fg], dtype=np.int64)
        cues["%i_cues" % idx] = np.where(volume)
        expected[image_id] = published_decode(volume)
        style = list_style if list_style != "mixed" else ("plain", "jpeg_dir")[n % 2]
        name = f"{image_id}.jpg" if style == "plain" else f"/JPEGImages/{image_id}.jpg"
        lines.append(f"{name} {idx}")
    Path(path).write_bytes(dumps_py2(cues) if py2 else pickle.dumps(cues, protocol=2))
    Path(list_path).write_text("\n".join(lines) + "\n")
    return expected
