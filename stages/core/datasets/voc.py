"""PASCAL VOC 2012 layout (also used by the demo dataset).

``data_root`` is ``VOCdevkit/VOC2012`` or a folder that holds ``VOCdevkit``.
Splits are the lists in ``ImageSets/Segmentation``; ``train_aug`` (the SBD
augmentation) is available when ``SegmentationClassAug/`` and a
``train_aug.txt`` list exist. Image-level labels are derived from the masks
once and cached under the cache folder, never inside the dataset (it may be
read-only); ``labels_file`` supplies them instead, so a split needs no masks.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import DatasetError
from ..io.files import write_json_atomic
from ..io.images import read_mask
from ..maps import IGNORE
from . import DATASETS
from .base import SegDataset
from .labelfile import read_label_file

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def resolve_voc_root(data_root: Optional[Path]) -> Path:
    if data_root is None:
        raise DatasetError("--data-root is required for the VOC dataset (the VOCdevkit/VOC2012 folder)")
    for cand in (data_root, data_root / "VOC2012", data_root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    raise DatasetError(
        f"no VOC layout under {data_root}: expected JPEGImages/ and ImageSets/Segmentation/ in it, "
        "in VOC2012/ or in VOCdevkit/VOC2012/"
    )


class VocDataset(SegDataset):
    def __init__(
        self,
        root: Path,
        split: str,
        *,
        class_names: Sequence[str] = VOC_CLASSES,
        name: str = "voc",
        labels_file: Optional[Path] = None,
        cache_dir: Path,
    ) -> None:
        self.root = root
        self.name = name
        self.split = split
        self.class_names = tuple(class_names)
        self._mask_dir = self._find_mask_dir(split)
        self.ids = self._read_split(split)
        self._cache_dir = cache_dir
        if labels_file is not None:
            labels = read_label_file(labels_file, self.class_names)
            missing = [i for i in self.ids if i not in labels]
            if missing:
                raise DatasetError(
                    f"{labels_file} has no labels for {len(missing)} image(s) of split {split!r}, e.g. {missing[0]}"
                )
            self._labels = {i: labels[i] for i in self.ids}
        else:
            self._labels = self._labels_from_masks()

    # -- layout ---------------------------------------------------------
    def _find_mask_dir(self, split: str) -> Optional[Path]:
        aug = self.root / "SegmentationClassAug"
        if split.endswith("_aug") or (aug.is_dir() and not (self.root / "SegmentationClass").is_dir()):
            return aug if aug.is_dir() else None
        plain = self.root / "SegmentationClass"
        return plain if plain.is_dir() else None

    def _read_split(self, split: str) -> list[str]:
        seg = self.root / "ImageSets" / "Segmentation"
        candidates = [seg / f"{split}.txt", self.root / f"{split}.txt"]
        for path in candidates:
            if path.is_file():
                ids = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
                # SBD-style lists hold "/JPEGImages/x.jpg /SegmentationClassAug/x.png"
                return [Path(i).stem for i in ids]
        have = sorted(p.stem for p in seg.glob("*.txt"))
        raise DatasetError(
            f"split {split!r} not found: looked for {candidates[0]} and {candidates[1]}; "
            f"available splits: {', '.join(have) or 'none'}"
        )

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def has_masks(self) -> bool:
        return self._mask_dir is not None

    def load_mask(self, image_id: str) -> np.ndarray:
        if self._mask_dir is None:
            raise DatasetError(
                f"split {self.split!r} of {self.root} has no masks (looked for SegmentationClass/ "
                "and SegmentationClassAug/)"
            )
        return read_mask(self._mask_dir / f"{image_id}.png")

    def labels(self, image_id: str) -> tuple[int, ...]:
        return self._labels[image_id]

    # -- image-level labels from masks, cached -----------------------------
    def _labels_cache_path(self) -> Path:
        key = hashlib.sha1(f"{self.root.resolve()}|{self._mask_dir}".encode()).hexdigest()[:12]
        return self._cache_dir / "labels" / self.name / key / f"{self.split}.json"

    def _labels_from_masks(self) -> dict[str, tuple[int, ...]]:
        if self._mask_dir is None:
            raise DatasetError(
                f"split {self.split!r} has no masks to derive image-level labels from; "
                "pass --labels-file (an 'id cls cls ...' text file or cls_labels.npy)"
            )
        cache = self._labels_cache_path()
        if cache.is_file():
            try:
                data = json.loads(cache.read_text())
                if set(data) >= set(self.ids):
                    return {i: tuple(data[i]) for i in self.ids}
            except (json.JSONDecodeError, OSError):
                pass  # a damaged cache is rebuilt below
        labels = {}
        k = len(self.class_names)
        for image_id in self.ids:
            mask = self.load_mask(image_id)
            present = np.unique(mask)
            bad = present[(present >= k) & (present != IGNORE)]
            if bad.size:
                raise DatasetError(
                    f"mask {self._mask_dir / (image_id + '.png')} holds class {int(bad[0])}, "
                    f"but the dataset has {k} classes"
                )
            labels[image_id] = tuple(int(c) for c in present if 0 < c < k)
        write_json_atomic(cache, labels)
        return labels


@DATASETS.register("voc")
def build_voc(data_root: Optional[Path], split: str, *, labels_file: Optional[Path] = None, cache_dir: Path) -> VocDataset:
    return VocDataset(resolve_voc_root(data_root), split, labels_file=labels_file, cache_dir=cache_dir)
