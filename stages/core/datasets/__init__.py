"""Dataset registry. ``build_dataset(name, root, split, ...)`` returns a ``SegDataset``;
``DataConfig`` names a split in a stage's config and builds it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..io.names import check_name
from ..options import opt
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

    # required on the command line (or DGCN_DATASET): a default would let a forgotten
    # --dataset run on the demo data and write under the names meant for the user's own
    dataset: str = opt("demo", "Dataset: {choices} (folder: your own images + labels CSV); required unless "
                       "DGCN_DATASET is set.", envvar="DGCN_DATASET", required=True,
                       choices=lambda: DATASETS.names())
    data_root: Optional[Path] = opt(None, "Dataset folder (VOCdevkit/VOC2012, the COCO root, or your folder). Not needed for demo.")
    split: str = opt("train", "Dataset split to process.")
    labels_file: Optional[Path] = opt(None, "Image-level labels from a file ('id cls cls ...' lines, or cls_labels.npy) "
                                            "instead of deriving them from masks.")
    cache_dir: Optional[Path] = opt(None, "Where derived data (labels, rasterised masks, demo data) is cached. "
                                          "Default ~/.cache/dgcn.", envvar="DGCN_CACHE")

    def build(self) -> SegDataset:
        return build_dataset(
            self.dataset, self.data_root, self.split, labels_file=self.labels_file, cache_dir=self.cache_dir
        )


__all__ = ["DataConfig", "DATASETS", "SegDataset", "WeakDataset", "build_dataset", "default_cache_dir", "labels_to_vector"]
