"""The dataset interface every registered dataset implements.

A dataset knows its image ids, image files, image-level labels and (optionally)
ground-truth masks. Training stages never get the dataset itself: they get a
``WeakDataset`` (``ds.weak()``), which is built only from image paths and
image-level labels, so no code path from training reaches a pixel mask.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DatasetError
from ..io.images import read_image
from ..io.names import check_ids


def default_cache_dir() -> Path:
    """Where derived data (image-level labels, rasterised masks, demo data) is cached.

    Outside the dataset folder, which may be read-only. ``DGCN_CACHE`` overrides it.
    """
    env = os.environ.get("DGCN_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dgcn"


def labels_to_vector(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Multi-hot float32 vector over the foreground classes 1..K (index i-1 for class i)."""
    vec = np.zeros(num_classes - 1, dtype=np.float32)
    for c in labels:
        vec[c - 1] = 1.0
    return vec


@dataclass(frozen=True)
class WeakDataset:
    """Images plus image-level labels: all a training stage may see."""

    name: str
    split: str
    class_names: tuple[str, ...]
    ids: tuple[str, ...]
    image_paths: Mapping[str, Path]
    image_labels: Mapping[str, tuple[int, ...]]
    has_labels: bool = True  # False: opened for its images only (``SegDataset.weak(labels=False)``)
    exif: bool = True  # apply EXIF orientation (the dataset's ``exif``: its images read the same here)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_paths[image_id], exif=self.exif)

    def labels(self, image_id: str) -> tuple[int, ...]:
        if not self.has_labels:
            raise DatasetError(f"{self.name}/{self.split} was opened for its images only: no image-level labels")
        return self.image_labels[image_id]

    def label_vector(self, image_id: str) -> np.ndarray:
        return labels_to_vector(self.labels(image_id), self.num_classes)


class SegDataset(ABC):
    """A split of a dataset: ids, images, image-level labels, optional masks.

    ``class_names[0]`` is always the background.
    """

    name: str
    split: str
    class_names: tuple[str, ...]
    # apply an image's EXIF Orientation tag (see ``read_image``); a dataset whose annotations
    # are on the stored pixel grid turns it off
    exif: bool = True

    @property
    def ids(self) -> list[str]:
        return self._ids

    @ids.setter
    def ids(self, value) -> None:
        # every dataset's ids pass here before any path is built from them
        self._ids = check_ids(value, "image id", f"split {getattr(self, 'split', '?')!r} of dataset {getattr(self, 'name', '?')!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def image_path(self, image_id: str) -> Path: ...

    @abstractmethod
    def labels(self, image_id: str) -> tuple[int, ...]:
        """Foreground class ids (1..K) present in the image, sorted. May read them on first
        use (from masks or a label file) and fail there: a split without labels still opens."""

    def has_masks(self) -> bool:
        return False

    def missing_masks(self) -> list[str]:
        """The ids without a ground-truth mask (all of them where the split has none)."""
        return [] if self.has_masks() else list(self.ids)

    def load_mask(self, image_id: str) -> np.ndarray:
        """Ground-truth mask (H, W) uint8, 255 = ignore. For evaluation only."""
        raise DatasetError(f"dataset {self.name!r} split {self.split!r} has no ground-truth masks")

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id), exif=self.exif)

    def label_vector(self, image_id: str) -> np.ndarray:
        return labels_to_vector(self.labels(image_id), self.num_classes)

    def weak(self, *, labels: bool = True) -> WeakDataset:
        """Images and image-level labels; with ``labels=False`` images only, so a stage that
        needs no labels (``saliency-bg``) works on a split that has none (VOC's test split)."""
        return WeakDataset(
            name=self.name,
            split=self.split,
            class_names=tuple(self.class_names),
            ids=tuple(self.ids),
            image_paths={i: self.image_path(i) for i in self.ids},
            image_labels={i: tuple(self.labels(i)) for i in self.ids} if labels else {},
            has_labels=labels,
            exif=self.exif,
        )

    def describe(self) -> dict:
        return {"dataset": self.name, "split": self.split, "class_names": list(self.class_names)}
