"""A user's own data: a folder of images plus a CSV of image-level labels.

Layout under ``data_root``::

    classes.txt        foreground class names, one per line ("background" first is optional)
    images/            the images (any PIL-readable format)
    <split>.csv        header ``image,labels``; labels separated by spaces or ';'
    masks/             optional PNG masks named <image stem>.png (only `evaluate` needs them)
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DatasetError
from ..io.images import IMAGE_SUFFIXES, read_mask
from . import DATASETS
from .base import SegDataset
from .labelfile import read_label_file


def read_class_list(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise DatasetError(f"class list not found: {path} (one foreground class name per line)")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if names and names[0] == "background":
        names = names[1:]
    if not names or len(set(names)) != len(names):
        raise DatasetError(f"{path}: needs at least one class name and no duplicates")
    if len(names) > 254:
        raise DatasetError(f"{path}: {len(names)} classes; at most 254 fit a uint8 label map")
    return ("background", *names)


class FolderDataset(SegDataset):
    def __init__(self, root: Path, split: str, *, labels_file: Optional[Path], cache_dir: Path) -> None:
        self.root = root
        self.name = "folder"
        self.split = split
        self.class_names = read_class_list(root / "classes.txt")
        self._images = {p.stem: p for p in sorted((root / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES} if (root / "images").is_dir() else None
        if self._images is None:
            raise DatasetError(f"no images/ folder in {root}")
        if labels_file is not None:
            self._labels = read_label_file(labels_file, self.class_names)
        else:
            self._labels = self._read_csv(root / f"{split}.csv")
        self.ids = sorted(self._labels)  # checked as names before any lookup
        missing = [i for i in self.ids if i not in self._images]
        if missing:
            raise DatasetError(f"{len(missing)} labelled image(s) not in {root / 'images'}, e.g. {missing[0]}")

    def _read_csv(self, path: Path) -> dict[str, tuple[int, ...]]:
        if not path.is_file():
            have = sorted(p.stem for p in self.root.glob("*.csv"))
            raise DatasetError(f"split file not found: {path}; available splits: {', '.join(have) or 'none'}")
        index = {n: i for i, n in enumerate(self.class_names)}
        out: dict[str, tuple[int, ...]] = {}
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"image", "labels"} <= set(reader.fieldnames):
                raise DatasetError(f"{path}: needs a header with the columns 'image' and 'labels'")
            for lineno, row in enumerate(reader, 2):
                names = (row["labels"] or "").replace(";", " ").split()
                unknown = [n for n in names if n not in index or index[n] == 0]
                if unknown:
                    raise DatasetError(f"{path}:{lineno}: unknown class {unknown[0]!r} (not in classes.txt)")
                image_id = Path(row["image"] or "").stem
                if image_id in out:
                    raise DatasetError(f"{path}:{lineno}: image {image_id!r} is listed twice; each image must appear once")
                out[image_id] = tuple(sorted({index[n] for n in names}))
        return out

    def image_path(self, image_id: str) -> Path:
        return self._images[image_id]

    def labels(self, image_id: str) -> tuple[int, ...]:
        return self._labels[image_id]

    def has_masks(self) -> bool:
        return (self.root / "masks").is_dir()

    def load_mask(self, image_id: str) -> np.ndarray:
        if not self.has_masks():
            raise DatasetError(f"no masks/ folder in {self.root}: this dataset cannot be evaluated")
        return read_mask(self.root / "masks" / f"{image_id}.png")


@DATASETS.register("folder")
def build_folder(data_root: Optional[Path], split: str, *, labels_file: Optional[Path] = None, cache_dir: Path) -> FolderDataset:
    if data_root is None or not data_root.is_dir():
        raise DatasetError(f"--data-root must be a folder with images/, classes.txt and <split>.csv (got {data_root})")
    return FolderDataset(data_root, split, labels_file=labels_file, cache_dir=cache_dir)
