"""Small stand-ins for ``VOCtrainval_11-May-2012.tar`` and SBD's ``benchmark.tgz``, in their real
layout, made from the horse-voc photos, for ``dgcn prepare voc`` tests and the ``make voc`` smoke
test.

``build_voc_archives(dest, ...)`` writes both archives into ``dest`` under their official names
and returns their paths and the split ids. The ids look like VOC's (``2011_000001``...), taken
in this order from the photos (horses and scenes alternating):

- VOC train (``n_voc_train``) and VOC val (``n_voc_val``): image and VOC mask in the tar. VOC's
  masks carry a 255 band along object boundaries, as the real ones do.
- ``q = n_sbd // 4`` "detection only" ids: an image in VOC's JPEGImages, no VOC mask.
- SBD (``n_sbd`` ids): ``q`` VOC train ids, ``q`` VOC val ids, the ``q`` detection-only ids,
  and ``n_sbd - 3q`` ids VOC does not have at all (image only in SBD's img/). SBD's masks have
  no 255 band, so where VOC and SBD both have a mask the two differ. SBD ids alternate between
  SBD's train.txt and val.txt.
- ``missing_sbd_images`` more SBD ids whose image is in neither archive (their .mat is there):
  a broken download that ``prepare`` must refuse.

The expected train_aug is (SBD train | SBD val | VOC train) - VOC val.

These are not the official files, so their official MD5 does not match: prepare them with
``--no-verify`` (``verify=False``) or with ``--md5 NAME=HEX`` giving their own MD5s.
"""
from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

HORSE_VOC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "horse-voc"
VOC_TAR_NAME = "VOCtrainval_11-May-2012.tar"
SBD_TGZ_NAME = "benchmark.tgz"
VOC_CLASS_COUNT = 21


def _pool(source: Path, n: int) -> list[str]:
    """``n`` source photo stems, horses and scenes alternating, so both labels occur."""
    stems = sorted(p.stem for p in (source / "JPEGImages").glob("*.jpg"))
    horses = [s for s in stems if s.startswith("horse")]
    scenes = [s for s in stems if not s.startswith("horse")]
    mixed = [s for pair in zip(horses, scenes) for s in pair]
    if len(mixed) < n:
        raise ValueError(f"{source} has {len(mixed)} usable photos, {n} needed")
    return mixed[:n]


def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.uint8).copy()


def with_boundary_band(mask: np.ndarray) -> np.ndarray:
    """VOC's look: 255 wherever a pixel's 3x3 neighbourhood holds another class."""
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    edge = np.zeros_like(mask, dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            edge |= padded[dy:dy + h, dx:dx + w] != mask
    out = mask.copy()
    out[edge] = 255
    return out


def _palette_png(path: Path, mask: np.ndarray) -> None:
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[13] = (192, 128, 0)
    pal[255] = (224, 224, 192)
    im.putpalette(pal.reshape(-1).tolist())
    im.save(path, format="PNG")


def write_sbd_mat(path: Path, seg: np.ndarray) -> None:
    """A ``cls/<id>.mat`` as SBD's: struct GTcls with Boundaries (a cell of one sparse boundary
    map per class), Segmentation (uint8 class map) and CategoriesPresent."""
    present = [int(c) for c in np.unique(seg) if 0 < c < VOC_CLASS_COUNT]
    boundaries = np.empty((VOC_CLASS_COUNT - 1, 1), dtype=object)
    band = with_boundary_band(seg) == 255
    for c in range(1, VOC_CLASS_COUNT):
        boundaries[c - 1, 0] = scipy.sparse.csc_matrix(band & (seg == c))
    gt = {
        "Boundaries": boundaries,
        "Segmentation": seg.astype(np.uint8),
        "CategoriesPresent": np.array(present, dtype=np.uint8).reshape(-1, 1),
    }
    scipy.io.savemat(str(path), {"GTcls": gt}, do_compression=True)


def _write_lines(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def _split_ids(n_voc_train: int, n_voc_val: int, n_sbd: int, missing: int) -> dict[str, list[str]]:
    q = max(1, n_sbd // 4)
    if n_sbd < 4 or q > min(n_voc_train, n_voc_val):
        raise ValueError("need n_sbd >= 4 and n_sbd // 4 <= n_voc_train, n_voc_val")
    n_new = n_sbd - 3 * q
    ids = [f"2011_{k:06d}" for k in range(1, n_voc_train + n_voc_val + q + n_new + missing + 1)]
    voc_train, rest = ids[:n_voc_train], ids[n_voc_train:]
    voc_val, rest = rest[:n_voc_val], rest[n_voc_val:]
    det_only, rest = rest[:q], rest[q:]
    sbd_new, missing_ids = rest[:n_new], rest[n_new:]
    sbd = voc_train[:q] + voc_val[:q] + det_only + sbd_new + missing_ids
    return {
        "voc_train": voc_train, "voc_val": voc_val, "detection_only": det_only, "sbd_new": sbd_new,
        "missing_images": missing_ids, "sbd_train": sbd[0::2], "sbd_val": sbd[1::2],
    }


def build_voc_archives(dest: Path, n_voc_train: int = 10, n_voc_val: int = 8, n_sbd: int = 16, *,
                       missing_sbd_images: int = 0, source: Optional[Path] = None) -> dict:
    """Write both archives into ``dest``; returns ``voc_tar``, ``sbd_tgz``, the id lists of
    ``_split_ids`` and ``expected`` (``{"train", "val", "train_aug"}`` id lists)."""
    source = Path(source) if source is not None else HORSE_VOC
    dest = Path(dest)
    split = _split_ids(n_voc_train, n_voc_val, n_sbd, missing_sbd_images)
    all_ids = split["voc_train"] + split["voc_val"] + split["detection_only"] + split["sbd_new"] + split["missing_images"]
    photo = dict(zip(all_ids, _pool(source, len(all_ids))))
    build = dest / "_build"
    shutil.rmtree(build, ignore_errors=True)

    voc = build / "voc" / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "Annotations"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    for image_id in split["voc_train"] + split["voc_val"] + split["detection_only"]:
        shutil.copyfile(source / "JPEGImages" / f"{photo[image_id]}.jpg", voc / "JPEGImages" / f"{image_id}.jpg")
    for image_id in split["voc_train"] + split["voc_val"]:
        mask = _read_mask(source / "SegmentationClass" / f"{photo[image_id]}.png")
        _palette_png(voc / "SegmentationClass" / f"{image_id}.png", with_boundary_band(mask))
    lists = voc / "ImageSets" / "Segmentation"
    _write_lines(lists / "train.txt", split["voc_train"])
    _write_lines(lists / "val.txt", split["voc_val"])
    _write_lines(lists / "trainval.txt", sorted(split["voc_train"] + split["voc_val"]))

    sbd = build / "sbd" / "benchmark_RELEASE" / "dataset"
    for d in ("img", "cls", "inst"):
        (sbd / d).mkdir(parents=True, exist_ok=True)
    for image_id in split["sbd_train"] + split["sbd_val"]:
        if image_id not in split["missing_images"]:
            shutil.copyfile(source / "JPEGImages" / f"{photo[image_id]}.jpg", sbd / "img" / f"{image_id}.jpg")
        write_sbd_mat(sbd / "cls" / f"{image_id}.mat", _read_mask(source / "SegmentationClass" / f"{photo[image_id]}.png"))
    (sbd / "inst" / "unused.mat").write_bytes(b"instance masks: never unpacked")
    _write_lines(sbd / "train.txt", split["sbd_train"])
    _write_lines(sbd / "val.txt", split["sbd_val"])

    voc_tar, sbd_tgz = dest / VOC_TAR_NAME, dest / SBD_TGZ_NAME
    with tarfile.open(voc_tar, "w") as tf:
        tf.add(build / "voc" / "VOCdevkit", arcname="VOCdevkit")
    with tarfile.open(sbd_tgz, "w:gz") as tf:
        tf.add(build / "sbd" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    shutil.rmtree(build)

    train_aug = sorted((set(split["sbd_train"]) | set(split["sbd_val"]) | set(split["voc_train"])) - set(split["voc_val"]))
    expected = {"train": split["voc_train"], "val": split["voc_val"], "train_aug": train_aug}
    return {"voc_tar": voc_tar, "sbd_tgz": sbd_tgz, "archives": dest, "photo": photo, "expected": expected, **split}


def add_member(archive: Path, name: str, data: bytes) -> None:
    """Append a regular file member called ``name`` (any name, unsafe ones included) to an
    uncompressed tar."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    with tarfile.open(archive, "a") as tf:
        tf.addfile(info, io.BytesIO(data))
