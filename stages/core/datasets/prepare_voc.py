"""PASCAL VOC 2012 with the SBD augmentation, in the layout ``--dataset voc`` reads.

From ``VOCtrainval_11-May-2012.tar`` and SBD's ``benchmark.tgz`` it makes, in
``VOCdevkit/VOC2012/``:

- ``SegmentationClassAug/<id>.png``: one mask for every ``train_aug`` and ``val`` id. Where VOC
  has its own mask (``SegmentationClass/``, the 2,913 trainval images) that one is copied
  unchanged: it is the official annotation, carries the 255 "ignore" band along object
  boundaries, and is what the ``SegmentationClassAug`` set most DeepLab/AffinityNet/IRN users
  download also keeps. The other ids get SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``)
  written as a VOC-palette PNG (values 0..20, no 255 band: SBD has none).
- ``JPEGImages/<id>.jpg`` for SBD images VOC's folder lacks.
- ``ImageSets/Segmentation/train_aug.txt``: (SBD train | SBD val | VOC train) - VOC val, sorted,
  one id a line. It is written last, after every file it lists is in place, so its presence
  means the tree is complete.

``VocDataset`` reads ``train_aug`` from ``SegmentationClassAug/`` (any split ending in ``_aug``)
and ``train``/``val`` from ``SegmentationClass/``; ``check_tree`` checks exactly those pairs.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Optional

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io.files import atomic_path, write_text_atomic
from ..io.images import write_palette_png
from ..maps import IGNORE
from .archives import ArchiveSpec
from .voc import VOC_CLASSES

Progress = Callable[..., None]

# URLs and MD5s as torchvision ships them (datasets/voc.py DATASET_YEAR_DICT["2012"],
# datasets/sbd.py SBDataset); tests/test_prepare.py checks they still agree.
VOC_TAR = ArchiveSpec(
    "VOCtrainval_11-May-2012.tar",
    "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "6cd6e144f989b92b3379bac3b3de84fd",
    "PASCAL VOC 2012 trainval",
)
SBD_TGZ = ArchiveSpec(
    "benchmark.tgz",
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
    "82b4d87ceb2ed10f6038a1cba92111cb",
    "SBD semantic boundaries benchmark",
)
OFFICIAL_COUNTS = {"train": 1464, "val": 1449, "train_aug": 10582}

VOC_PREFIX = "VOCdevkit/VOC2012"
SBD_PREFIX = "benchmark_RELEASE/dataset"
SEG_LISTS = Path("ImageSets") / "Segmentation"
# What split reads which mask folder, as VocDataset._find_mask_dir chooses.
SPLIT_MASKS = {"train": "SegmentationClass", "val": "SegmentationClass", "train_aug": "SegmentationClassAug"}
_SHOWN = 3  # missing files named in a refusal before "and N more"


def voc_dir_of(root: Path) -> Path:
    """The VOC2012 folder for ``--root``: an existing one (``root`` itself, ``root/VOC2012`` or
    ``root/VOCdevkit/VOC2012``), else where the archive puts it, ``root/VOCdevkit/VOC2012``."""
    for cand in (root, root / "VOC2012", root / VOC_PREFIX):
        if (cand / "JPEGImages").is_dir() and (cand / SEG_LISTS).is_dir():
            return cand
    return root / VOC_PREFIX


def has_voc(voc_dir: Path) -> bool:
    lists = voc_dir / SEG_LISTS
    return (voc_dir / "SegmentationClass").is_dir() and all((lists / f"{s}.txt").is_file() for s in ("train", "val"))


def keep_voc(name: str) -> bool:
    return name.startswith(VOC_PREFIX + "/")


def keep_sbd(name: str) -> bool:
    # inst/ (instance masks) is not used: about a third of the unpacked size saved.
    return any(name.startswith(f"{SBD_PREFIX}/{part}") for part in ("img/", "cls/", "train.txt", "val.txt"))


def read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"split list {path} is missing")
    # as VocDataset reads a list: SBD-style lines hold "/JPEGImages/x.jpg /SegmentationClassAug/x.png"
    return [PurePosixPath(ln.split()[0]).stem for ln in path.read_text().splitlines() if ln.strip()]


def train_aug_ids(voc_train: Iterable[str], voc_val: Iterable[str], sbd_train: Iterable[str], sbd_val: Iterable[str]) -> list[str]:
    # VOC val is the evaluation set: no image of it may be trained on, whatever SBD calls it.
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


# -- SBD masks ------------------------------------------------------------------------------


def read_sbd_mask(mat_path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` as a uint8 (H, W) class map."""
    from scipy.io import loadmat  # scipy is slow to import; only conversion needs it

    try:
        mat = loadmat(str(mat_path))
        seg = np.asarray(mat["GTcls"]["Segmentation"].flat[0])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise DatasetError(f"cannot read SBD mask {mat_path} (GTcls.Segmentation): {err}") from None
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise DatasetError(f"SBD mask {mat_path}: GTcls.Segmentation is {seg.dtype} {seg.shape}, not a 2-D class map")
    bad = np.unique(seg[((seg >= len(VOC_CLASSES)) & (seg != IGNORE)) | (seg < 0)])
    if bad.size:
        raise DatasetError(f"SBD mask {mat_path} holds value {int(bad[0])}; VOC classes are 0..{len(VOC_CLASSES) - 1}")
    return seg.astype(np.uint8)


# a VOC-palette PNG (as VOC's own masks, viewable in colour), written atomically
write_mask_png = write_palette_png


def convert_sbd_mask(mat_path: Path, png_path: Path, image_path: Path) -> None:
    mask = read_sbd_mask(mat_path)
    with Image.open(image_path) as im:  # the header only: is the mask the image's size?
        width, height = im.size
    if mask.shape != (height, width):
        raise DatasetError(
            f"SBD mask {mat_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is {width}x{height}"
        )
    write_mask_png(png_path, mask)


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


# -- merging SBD into the VOC tree ------------------------------------------------------------


def merge_sbd(voc_dir: Path, sbd_dir: Path, progress: Optional[Progress] = None) -> tuple[list[str], dict[str, int]]:
    """Fill ``JPEGImages`` and ``SegmentationClassAug`` for every train_aug and val id (files
    already there are skipped); returns the train_aug ids and how many files of each kind were
    written. ``train_aug.txt`` is not written: see ``write_train_aug``."""
    report = progress or (lambda *a, **k: None)
    lists = voc_dir / SEG_LISTS
    voc_train, voc_val = read_ids(lists / "train.txt"), read_ids(lists / "val.txt")
    aug = train_aug_ids(voc_train, voc_val, read_ids(sbd_dir / "train.txt"), read_ids(sbd_dir / "val.txt"))
    images, voc_masks, aug_dir = voc_dir / "JPEGImages", voc_dir / "SegmentationClass", voc_dir / "SegmentationClassAug"
    have_images, have_voc, have_aug = (_stems(d, s) for d, s in ((images, ".jpg"), (voc_masks, ".png"), (aug_dir, ".png")))
    done = {"images added from SBD": 0, "VOC masks copied": 0, "SBD masks converted": 0}
    todo = sorted(set(aug) | set(voc_val))
    for n, image_id in enumerate(todo, 1):
        if image_id not in have_images and (sbd_dir / "img" / f"{image_id}.jpg").is_file():
            _copy_atomic(sbd_dir / "img" / f"{image_id}.jpg", images / f"{image_id}.jpg")
            have_images.add(image_id)
            done["images added from SBD"] += 1
        if image_id not in have_aug:
            if image_id in have_voc:
                _copy_atomic(voc_masks / f"{image_id}.png", aug_dir / f"{image_id}.png")
                done["VOC masks copied"] += 1
            elif (sbd_dir / "cls" / f"{image_id}.mat").is_file() and image_id in have_images:
                convert_sbd_mask(sbd_dir / "cls" / f"{image_id}.mat", aug_dir / f"{image_id}.png", images / f"{image_id}.jpg")
                done["SBD masks converted"] += 1
        report(n, len(todo), "SegmentationClassAug")
    return aug, done


def _stems(folder: Path, suffix: str) -> set[str]:
    # One listing instead of a stat per id: the real folders hold 10k-17k files.
    try:
        return {e.name[: -len(suffix)] for e in os.scandir(folder) if e.name.endswith(suffix) and e.is_file()}
    except FileNotFoundError:
        return set()


def write_train_aug(voc_dir: Path, ids: list[str]) -> Path:
    path = voc_dir / SEG_LISTS / "train_aug.txt"
    write_text_atomic(path, "".join(f"{i}\n" for i in ids))
    return path


# -- checking -------------------------------------------------------------------------------------


def check_split(voc_dir: Path, split: str, ids: list[str]) -> None:
    """Refuse (one line) when a listed id lacks its image or the mask its split reads."""
    mask_dir = SPLIT_MASKS[split]
    images, masks = _stems(voc_dir / "JPEGImages", ".jpg"), _stems(voc_dir / mask_dir, ".png")
    missing = []
    for image_id in ids:
        lacks = [f"JPEGImages/{image_id}.jpg"] if image_id not in images else []
        lacks += [f"{mask_dir}/{image_id}.png"] if image_id not in masks else []
        if lacks:
            missing.append(", ".join(lacks))
    if missing:
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise DatasetError(
            f"{voc_dir}: {len(missing)} of the {len(ids)} ids in {SEG_LISTS / (split + '.txt')} lack a file: "
            f"{'; '.join(missing[:_SHOWN])}{more}"
        )


def check_tree(voc_dir: Path, train_aug: Optional[list[str]] = None) -> dict[str, int]:
    """Counts per split after checking every listed id's image and mask; ``train_aug`` gives the
    list before ``train_aug.txt`` exists (it is written only after this check passed)."""
    lists = voc_dir / SEG_LISTS
    splits = {
        "train": read_ids(lists / "train.txt"),
        "val": read_ids(lists / "val.txt"),
        "train_aug": train_aug if train_aug is not None else read_ids(lists / "train_aug.txt"),
    }
    for split, ids in splits.items():
        check_split(voc_dir, split, ids)
    return {split: len(ids) for split, ids in splits.items()}


def check_official_counts(voc_dir: Path, counts: dict[str, int]) -> None:
    wrong = [f"{s} {counts[s]} (official {n})" for s, n in OFFICIAL_COUNTS.items() if counts.get(s) != n]
    if wrong:
        raise DatasetError(
            f"{voc_dir}: the official archives give {', '.join(f'{s} {n}' for s, n in OFFICIAL_COUNTS.items())} "
            f"images, this tree has {'; '.join(wrong)}: edited split lists or a partial earlier tree"
        )
