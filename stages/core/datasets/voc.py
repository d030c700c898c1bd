"""PASCAL VOC 2012 layout (also used by the demo dataset).

``data_root`` is ``VOCdevkit/VOC2012`` or a folder that holds ``VOCdevkit``.
Splits are the lists in ``ImageSets/Segmentation``; ``train_aug`` (the SBD
augmentation) is available when ``SegmentationClassAug/`` and a
``train_aug.txt`` list exist. Image-level labels are derived from the masks
once and cached under the cache folder, never inside the dataset (it may be
read-only); ``labels_file`` supplies them instead, so a split needs no masks.

Labels are read when a stage first asks for them (``labels``, ``weak``), not when
the split opens: VOC's ``test`` split has no masks, and the stages that need only
images (``infer``, ``saliency-bg``, ``show``) work on it without a labels file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NoReturn, Optional, Sequence

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
        self._labels_file = labels_file
        # a label file's own errors show at once; whether it covers the split, when labels are asked for
        self._file_labels = read_label_file(labels_file, self.class_names) if labels_file is not None else None
        self._labels: Optional[dict[str, tuple[int, ...]]] = None
        self._missing_masks: Optional[list[str]] = None

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

    def missing_masks(self) -> list[str]:
        """Ids of the split without a mask file: all of them without a mask folder, and the
        test ids of a tree where VOC's test images were unpacked beside trainval's masks."""
        if self._missing_masks is None:
            if self._mask_dir is None:
                self._missing_masks = list(self.ids)
            else:
                self._missing_masks = [i for i in self.ids if not (self._mask_dir / f"{i}.png").is_file()]
        return self._missing_masks

    def has_masks(self) -> bool:
        return not self.missing_masks()

    def load_mask(self, image_id: str) -> np.ndarray:
        if self._mask_dir is None:
            raise DatasetError(
                f"split {self.split!r} of {self.root} has no masks (looked for SegmentationClass/ "
                "and SegmentationClassAug/)"
            )
        return read_mask(self._mask_dir / f"{image_id}.png")

    def labels(self, image_id: str) -> tuple[int, ...]:
        if self._labels is None:
            self._labels = self._labels_from_file() if self._file_labels is not None else self._labels_from_masks()
        return self._labels[image_id]

    def _labels_from_file(self) -> dict[str, tuple[int, ...]]:
        labels = self._file_labels
        assert labels is not None
        missing = [i for i in self.ids if i not in labels]
        if missing:
            raise DatasetError(
                f"{self._labels_file} has no labels for {len(missing)} image(s) of split {self.split!r}, e.g. {missing[0]}"
            )
        return {i: labels[i] for i in self.ids}

    # -- image-level labels from masks, cached -----------------------------
    def _labels_cache_path(self) -> Path:
        key = hashlib.sha1(f"{self.root.resolve()}|{self._mask_dir}".encode()).hexdigest()[:12]
        return self._cache_dir / "labels" / self.name / key / f"{self.split}.json"

    def _labels_from_masks(self) -> dict[str, tuple[int, ...]]:
        if self._mask_dir is None:
            self._no_masks_for_labels(self.ids)
        cache = self._labels_cache_path()
        if cache.is_file():
            try:
                data = json.loads(cache.read_text())
                if set(data) >= set(self.ids):
                    return {i: tuple(data[i]) for i in self.ids}
            except (json.JSONDecodeError, OSError):
                pass  # a damaged cache is rebuilt below
        if self.missing_masks():
            self._no_masks_for_labels(self.missing_masks())
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

    def _no_masks_for_labels(self, missing: Sequence[str]) -> NoReturn:
        which = "" if len(missing) == len(self.ids) else f" for {len(missing)} of its {len(self.ids)} images (e.g. {missing[0]})"
        raise DatasetError(
            f"split {self.split!r} of {self.root} has no masks{which} to derive image-level labels from; "
            "pass --labels-file (an 'id cls cls ...' text file or cls_labels.npy)"
        )


@DATASETS.register("voc")
def build_voc(data_root: Optional[Path], split: str, *, labels_file: Optional[Path] = None, cache_dir: Path) -> VocDataset:
    return VocDataset(resolve_voc_root(data_root), split, labels_file=labels_file, cache_dir=cache_dir)
