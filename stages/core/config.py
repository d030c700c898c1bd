"""Pieces of configuration shared by several stages."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .datasets import SegDataset, build_dataset


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


def to_jsonable(obj: Any) -> Any:
    """A dataclass config as plain JSON data (paths as strings), for artifact provenance."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj
