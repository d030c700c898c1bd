"""MS-COCO 2014 in the layout ``--dataset coco`` reads.

From ``train2014.zip``, ``val2014.zip`` and ``annotations_trainval2014.zip`` it makes
``<root>/train2014/``, ``<root>/val2014/`` and ``<root>/annotations/instances_{train,val}2014.json``
(the other annotation files of the zip, captions and keypoints, are not unpacked: nothing here
reads them).

COCO publishes no checksums (and torchvision ships none), so without ``--md5`` what is checked
is each zip's own structure and the CRC-32 of every member as it is unpacked, that pycocotools
loads each annotation file, and that every image it lists exists. Image counts are compared with
the 2014 release's (82,783 / 40,504); a difference is a warning, not a refusal, since a user's
own subset of COCO is a valid dataset.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Callable, Optional

from ..errors import DatasetError
from .archives import ArchiveSpec, Keep
from .coco import ANNOTATIONS_DIR, CocoDataset, annotation_file

Progress = Callable[..., None]

SPLITS = ("train2014", "val2014")
IMAGE_ZIPS = {
    split: ArchiveSpec(f"{split}.zip", f"http://images.cocodataset.org/zips/{split}.zip", None, f"COCO {split} images")
    for split in SPLITS
}
ANNOTATIONS_ZIP = ArchiveSpec(
    "annotations_trainval2014.zip",
    "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
    None,
    "COCO 2014 train/val annotations",
)
ARCHIVES = (*IMAGE_ZIPS.values(), ANNOTATIONS_ZIP)
OFFICIAL_COUNTS = {"train2014": 82783, "val2014": 40504}
_SHOWN = 3


def needed(root: Path) -> list[ArchiveSpec]:
    """The archives whose contents are not in place under ``root`` yet. A split folder is only
    ever moved into ``root`` once unpacked whole, so its presence means done."""
    todo = [IMAGE_ZIPS[s] for s in SPLITS if not (root / s).is_dir()]
    if not all(annotation_file(root, s).is_file() for s in SPLITS):
        todo.append(ANNOTATIONS_ZIP)
    return todo


def keep_for(spec: ArchiveSpec) -> Keep:
    if spec is ANNOTATIONS_ZIP:
        wanted = {f"{ANNOTATIONS_DIR}/instances_{s}.json" for s in SPLITS}
        return wanted.__contains__
    prefix = spec.name[: -len(".zip")] + "/"
    return lambda name: name.startswith(prefix)


def unpacked_parts(spec: ArchiveSpec) -> list[str]:
    """The top-level entries an archive's kept members unpack to (what is moved into root)."""
    return [ANNOTATIONS_DIR] if spec is ANNOTATIONS_ZIP else [spec.name[: -len(".zip")]]


def listed_images(root: Path, split: str) -> int:
    """Load the split's annotation file with pycocotools and refuse (one line) when an image it
    lists is missing from ``root/split/``; returns how many images it lists."""
    from pycocotools.coco import COCO

    path = annotation_file(root, split)
    try:
        # pycocotools prints progress to stdout, which is the CLI's result channel.
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (OSError, ValueError, AssertionError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: pycocotools cannot load it ({type(err).__name__}: {err})") from None
    names = [im.get("file_name", "") for im in coco.dataset.get("images", [])]
    present = {e.name for e in os.scandir(root / split) if e.is_file()}
    missing = [n for n in names if n not in present and not (root / split / n).is_file()]
    if missing:
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise DatasetError(
            f"{len(missing)} of the {len(names)} images listed in {path} are missing from {root / split}/: "
            f"{', '.join(missing[:_SHOWN])}{more}"
        )
    return len(names)


def open_split(root: Path, split: str, cache_dir: Optional[Path]) -> CocoDataset:
    """The split as ``--dataset coco`` opens it, so what it refuses is refused here already."""
    return CocoDataset(root, split, cache_dir=cache_dir)


def build_mask_cache(ds: CocoDataset, progress: Optional[Progress] = None) -> int:
    """Rasterise every mask of ``ds`` into its cache (masks already cached are read, not redone);
    returns the number of images."""
    report = progress or (lambda *a, **k: None)
    for n, image_id in enumerate(ds.ids, 1):
        ds.load_mask(image_id)
        report(n, len(ds.ids), f"masks {ds.split}")
    return len(ds.ids)


def count_warnings(counts: dict[str, int]) -> list[str]:
    return [
        f"{split}: {counts[split]} images listed, the COCO 2014 release has {n}: a subset or another version"
        for split, n in OFFICIAL_COUNTS.items()
        if counts.get(split) != n
    ]

