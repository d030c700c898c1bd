"""Dataset registry. ``build_dataset(name, root, split, ...)`` returns a ``SegDataset``;
``DataConfig`` names a split in a stage's config and builds it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..io.names import check_name
from ..registry import Registry
from .base import SegDataset, WeakDataset, default_cache_dir, labels_to_vector

# Each factory: (data_root, split, *, labels_file, cache_dir) -> SegDataset
DATASETS: Registry[Callable[..., SegDataset]] = Registry("dataset")

from . import coco, demo, folder, voc  # noqa: E402,F401  (registration side effects)


def build_dataset(
    name: str,
    data_root: Optional[Path],
    split: str,
    *,
    labels_file: Optional[Path] = None,
    cache_dir: Optional[Path] = None,
) -> SegDataset:
    factory = DATASETS.get(name)
    check_name(split, "split name", f"dataset {name!r}")
    return factory(
        Path(data_root) if data_root is not None else None,
        split,
        labels_file=Path(labels_file) if labels_file is not None else None,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
    )


@dataclass(frozen=True)
class DataConfig:
    """Which dataset split a stage reads."""

    dataset: str = "demo"
    data_root: Optional[Path] = None
    split: str = "train"
    labels_file: Optional[Path] = None
    cache_dir: Optional[Path] = None

    def build(self) -> SegDataset:
        return build_dataset(
            self.dataset, self.data_root, self.split, labels_file=self.labels_file, cache_dir=self.cache_dir
        )


__all__ = ["DataConfig", "DATASETS", "SegDataset", "WeakDataset", "build_dataset", "default_cache_dir", "labels_to_vector"]
