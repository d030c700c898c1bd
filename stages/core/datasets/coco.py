"""MS-COCO instance annotations read as a weakly-supervised segmentation dataset.

Layout under ``--data-root DIR``: a split is any name ``S`` with both ``DIR/S/`` (images) and
``DIR/annotations/instances_S.json`` (e.g. ``train2014``, ``val2014``, ``train2017``). A
split given without its year (``train``, ``val``) resolves to the one ``train<year>`` /
``val<year>`` split present, and every later error says which split it resolved to.

Documented choices:

- Classes: the annotation file's categories in ascending official category id order become
  the contiguous ids 1..K (K = 80 for COCO, so 81 classes with ``class_names[0] =
  "background"``); names are taken from the file. ``category_ids[c - 1]`` is the official id of
  class ``c``.
- Image ids are the file stems (``000000000009``, ``COCO_val2014_000000000042``);
  ``coco_image_id(id)`` gives the COCO image id back.
- Image-level labels: the classes of the image's *non-crowd* annotations, as in the paper's
  protocol. A crowd region is an unreliable "many objects somewhere here" and does not make a
  label on its own.
- Images without a label: ``train*`` splits drop them, because a WSSS classifier has nothing to
  learn from an image with no positive class (this includes images whose only annotations are
  crowds). Every other split keeps them: they are part of the evaluation set, all background.
- Masks (evaluation only) are rasterised with pycocotools from the polygons / RLE. Non-crowd
  objects are drawn largest first (by rasterised pixel count, ties by annotation id), so a
  smaller object lying on a larger one stays visible. Crowd regions become 255 (ignore) only
  where no non-crowd object was drawn: an individually annotated instance inside a crowd is
  ground truth we keep. Polygons with fewer than 3 points cover no pixel and are skipped
  (pycocotools would read a lone 4-number polygon as a box).
- Masks are cached as palette PNGs in ``cache_dir/coco/<split>/<key>/<id>.png``, where the key
  hashes the annotation file's path, mtime and size and the rasterisation rule's version, so an
  edited annotation file or a changed rule never reuses stale masks. Writes are atomic (temporary
  name + ``os.replace``); caching is best effort, a read-only cache only costs speed.
- Images are read on their stored pixel grid, ignoring an EXIF Orientation tag: the masks
  are rasterised at the annotation file's height and width, which are that grid's.
- ``--labels-file`` is refused: labels come from the annotation file, and a second source
  would silently disagree with the masks.

The JSON is parsed once per dataset object with the standard library rather than through
``pycocotools.coco.COCO``, which prints progress to stdout and would clutter the CLI output.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Optional

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..errors import DatasetError
from ..io.files import atomic_path
from ..io.images import read_mask, voc_palette
from ..maps import IGNORE
from . import DATASETS
from .base import SegDataset, default_cache_dir

ANNOTATIONS_DIR = "annotations"
# Part of the cache key: bump it whenever the overlap or crowd rule changes.
RASTER_VERSION = "1"


def annotation_file(root: Path, split: str) -> Path:
    return root / ANNOTATIONS_DIR / f"instances_{split}.json"


def _is_int(x: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int, and are never a valid id.
    return isinstance(x, int) and not isinstance(x, bool)


def resolve_split(root: Path, split: str) -> str:
    """The split folder name under ``root`` that ``split`` designates (``train`` -> ``train2014``)."""
    if not root.is_dir():
        raise DatasetError(
            f"COCO data root {root} is not a folder; pass --data-root DIR with <split>/ images and "
            f"{ANNOTATIONS_DIR}/instances_<split>.json"
        )
    ann_dir = root / ANNOTATIONS_DIR
    with_images = {p.name for p in root.iterdir() if p.is_dir() and p.name != ANNOTATIONS_DIR}
    with_ann = set()
    if ann_dir.is_dir():
        with_ann = {p.name[len("instances_"):-len(".json")] for p in ann_dir.glob("instances_*.json")}
    complete = sorted(with_images & with_ann)
    if complete:
        found = f"splits found: {', '.join(complete)}"
    else:
        found = f"no complete split found (each needs {root}/<split>/ and {ann_dir}/instances_<split>.json)"

    if split in complete:
        return split
    pattern = re.compile(re.escape(split) + r"\d{4}")
    full = [s for s in complete if pattern.fullmatch(s)]
    if len(full) == 1:
        return full[0]
    if len(full) > 1:
        raise DatasetError(
            f"COCO split {split!r} is ambiguous in {root}: {', '.join(full)} all exist; pass one of them to --split"
        )

    name, note = split, ""
    if split not in with_images and split not in with_ann:
        partial = sorted(s for s in with_images | with_ann if pattern.fullmatch(s))
        if len(partial) != 1:
            raise DatasetError(
                f"no COCO split {split!r} in {root}: looked for {root / split}/ and "
                f"{annotation_file(root, split)}; {found}"
            )
        name, note = partial[0], f"--split {split} resolved to {partial[0]}: "
    if name not in with_images:
        raise DatasetError(
            f"{note}COCO images folder {root / name}/ is missing "
            f"(its annotation file {annotation_file(root, name)} exists); {found}"
        )
    raise DatasetError(
        f"{note}COCO annotation file {annotation_file(root, name)} is missing "
        f"(the images folder {root / name}/ exists); {found}"
    )


@dataclass(frozen=True)
class _Ann:
    ann_id: int
    class_id: int
    crowd: bool
    segmentation: Any


@dataclass(frozen=True)
class _Image:
    coco_id: int
    file_name: str
    height: int
    width: int


def _rle_string_total(counts: str) -> Optional[int]:
    """Sum of the run lengths in a compressed COCO RLE string; None when it does not decode.

    pycocotools decodes into an h*w buffer without a bounds check, so runs that overshoot it
    would corrupt memory instead of raising: the total is checked before decoding. Format: each
    run is little-endian 5-bit groups offset by 48, 0x20 = more groups follow, 0x10 in the last
    group = sign; from the third run on the value is a delta against the run two places back.
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                return None
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and (c & 0x10):
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
    return sum(runs)


class CocoDataset(SegDataset):
    """One split of a COCO-format dataset; see the module docstring for the choices made."""

    name = "coco"
    # masks are rasterised at the annotation file's height x width, the stored pixel grid
    # (COCO-era tools ignored EXIF): images are read on that grid too, tag or no tag
    exif = False

    def __init__(
        self,
        root: Path,
        split: str,
        *,
        cache_dir: Optional[Path] = None,
        requested_split: Optional[str] = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.images_dir = self.root / split
        self.annotation_path = annotation_file(self.root, split)
        self._note = (
            f"--split {requested_split} resolved to {split}: "
            if requested_split is not None and requested_split != split
            else ""
        )
        self._cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()

        data = self._read_json()
        self._cache_key = self._annotation_fingerprint()
        cat_ids, names = self._parse_categories(data)
        self.category_ids: tuple[int, ...] = cat_ids
        self.class_names: tuple[str, ...] = ("background",) + names
        images = self._parse_images(data)
        anns = self._parse_annotations(data, images, {cid: i + 1 for i, cid in enumerate(cat_ids)})
        self._check_files(images)

        by_stem: dict[str, _Image] = {}
        for im in images.values():
            stem = Path(im.file_name).stem
            if stem in by_stem:
                self._fail(
                    f"images {by_stem[stem].coco_id} and {im.coco_id} share the file stem {stem!r}, "
                    f"which is the image id here"
                )
            by_stem[stem] = im
        drop_unlabelled = split.startswith("train")
        self._images: dict[str, _Image] = {}
        self._anns: dict[str, tuple[_Ann, ...]] = {}
        self._labels: dict[str, tuple[int, ...]] = {}
        for stem, im in by_stem.items():
            own = tuple(anns.get(im.coco_id, ()))
            labels = tuple(sorted({a.class_id for a in own if not a.crowd}))
            if drop_unlabelled and not labels:
                continue
            self._images[stem] = im
            self._anns[stem] = own
            self._labels[stem] = labels
        self.ids: list[str] = sorted(self._images)
        if not self.ids:
            # An empty split would only fail later, far from the cause.
            if not images:
                self._fail("lists no images")
            self._fail("no image has a non-crowd annotation, and train splits keep only labelled images")

    # -- parsing -------------------------------------------------------------------------

    def _fail(self, problem: str) -> NoReturn:
        raise DatasetError(f"{self._note}{self.annotation_path}: {problem}")

    def _read_json(self) -> dict:
        try:
            with open(self.annotation_path, "rb") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as err:
            self._fail(f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}")
        except UnicodeDecodeError as err:
            self._fail(f"not UTF-8 text ({err.reason} at byte {err.start})")
        except OSError as err:
            self._fail(f"cannot read: {err.strerror or err}")
        if not isinstance(data, dict):
            self._fail(f"expected a JSON object at the top, found {type(data).__name__}")
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            self._fail(f"missing key(s) {', '.join(repr(k) for k in missing)}; not a COCO instances file")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data[key], list):
                self._fail(f"{key!r} must be a list, found {type(data[key]).__name__}")
        return data

    def _parse_categories(self, data: dict) -> tuple[tuple[int, ...], tuple[str, ...]]:
        cats: dict[int, str] = {}
        for i, cat in enumerate(data["categories"]):
            if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
                self._fail(f"categories[{i}] needs an integer 'id' and a string 'name'")
            if cat["id"] in cats:
                self._fail(f"category id {cat['id']} appears twice")
            cats[cat["id"]] = cat["name"]
        # 0 is the background and 255 the ignore value of the uint8 masks.
        if not 1 <= len(cats) <= 254:
            self._fail(f"needs between 1 and 254 categories, found {len(cats)}")
        ordered = sorted(cats)
        return tuple(ordered), tuple(cats[c] for c in ordered)

    def _parse_images(self, data: dict) -> dict[int, _Image]:
        images: dict[int, _Image] = {}
        for i, im in enumerate(data["images"]):
            ok = (
                isinstance(im, dict)
                and _is_int(im.get("id"))
                and isinstance(im.get("file_name"), str)
                and im["file_name"] != ""
                and _is_int(im.get("height"))
                and _is_int(im.get("width"))
                and im["height"] > 0
                and im["width"] > 0
            )
            if not ok:
                self._fail(
                    f"images[{i}] needs an integer 'id', a 'file_name' and positive integer 'height' and 'width'"
                )
            if im["id"] in images:
                self._fail(f"image id {im['id']} appears twice")
            images[im["id"]] = _Image(im["id"], im["file_name"], im["height"], im["width"])
        return images

    def _parse_annotations(
        self, data: dict, images: dict[int, _Image], class_of: dict[int, int]
    ) -> dict[int, list[_Ann]]:
        anns: dict[int, list[_Ann]] = {}
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or not _is_int(ann.get("id")):
                self._fail(f"annotations[{i}] has no integer 'id'")
            aid = ann["id"]
            where = f"annotation {aid}"
            if "image_id" not in ann or ann["image_id"] not in images:
                self._fail(f"{where} refers to unknown image id {ann.get('image_id')!r}")
            if "category_id" not in ann or ann["category_id"] not in class_of:
                self._fail(f"{where} refers to unknown category id {ann.get('category_id')!r}")
            crowd = ann.get("iscrowd", 0)
            if not _is_int(crowd) and not isinstance(crowd, bool):
                self._fail(f"{where}: 'iscrowd' must be 0 or 1, found {crowd!r}")
            im = images[ann["image_id"]]
            seg = ann.get("segmentation")
            self._check_segmentation(seg, im, where)
            anns.setdefault(im.coco_id, []).append(
                _Ann(aid, class_of[ann["category_id"]], bool(crowd), seg)
            )
        return anns

    def _check_segmentation(self, seg: Any, im: _Image, where: str) -> None:
        """Structure only: coordinates and compressed strings are checked when rasterised,
        which keeps opening train2014 (600k annotations) fast."""
        if isinstance(seg, list):
            for poly in seg:
                if not isinstance(poly, list) or len(poly) % 2:
                    self._fail(f"{where}: a polygon must be a flat list of x, y coordinates (even length)")
            return
        if isinstance(seg, dict):
            size, counts = seg.get("size"), seg.get("counts")
            if not isinstance(size, list) or len(size) != 2 or not all(_is_int(s) for s in size):
                self._fail(f"{where}: RLE 'size' must be [height, width]")
            if size != [im.height, im.width]:
                self._fail(
                    f"{where}: RLE size {size} differs from image {im.coco_id}'s "
                    f"{im.height}x{im.width}"
                )
            if isinstance(counts, list):
                if not all(_is_int(c) and c >= 0 for c in counts):
                    self._fail(f"{where}: RLE counts must be non-negative integers")
                if sum(counts) != im.height * im.width:
                    self._fail(
                        f"{where}: RLE counts sum to {sum(counts)}, not height*width = {im.height * im.width}"
                    )
                return
            if not isinstance(counts, str):
                self._fail(f"{where}: RLE 'counts' must be a list of run lengths or a compressed string")
            return
        self._fail(
            f"{where}: segmentation must be a list of polygons or an RLE dict, found {type(seg).__name__}"
        )

    def _check_files(self, images: dict[int, _Image]) -> None:
        try:
            present = {e.name for e in os.scandir(self.images_dir) if e.is_file()}
        except OSError as err:
            raise DatasetError(f"{self._note}cannot list COCO images folder {self.images_dir}: {err.strerror or err}") from None
        missing = [
            im.file_name
            for im in images.values()
            if not (im.file_name in present or ("/" in im.file_name and (self.images_dir / im.file_name).is_file()))
        ]
        if missing:
            raise DatasetError(
                f"{self._note}{len(missing)} of {len(images)} images listed in {self.annotation_path} "
                f"are missing from {self.images_dir}/ (first: {missing[0]})"
            )

    # -- SegDataset ------------------------------------------------------------------------

    def _image(self, image_id: str) -> _Image:
        try:
            return self._images[image_id]
        except KeyError:
            raise DatasetError(f"image id {image_id!r} is not in coco split {self.split}") from None

    def image_path(self, image_id: str) -> Path:
        return self.images_dir / self._image(image_id).file_name

    def coco_image_id(self, image_id: str) -> int:
        return self._image(image_id).coco_id

    def labels(self, image_id: str) -> tuple[int, ...]:
        self._image(image_id)
        return self._labels[image_id]

    def has_masks(self) -> bool:
        return True

    def load_mask(self, image_id: str) -> np.ndarray:
        im = self._image(image_id)
        path = self.mask_cache_dir() / f"{image_id}.png"
        if path.is_file():
            try:
                cached = read_mask(path)
            except DatasetError:
                cached = None
            if cached is not None and cached.shape == (im.height, im.width):
                return cached
        mask = self.rasterise(image_id)
        _write_png_atomic(path, mask)
        return mask

    # -- masks -------------------------------------------------------------------------

    def _annotation_fingerprint(self) -> str:
        st = self.annotation_path.stat()
        key = f"{self.annotation_path.resolve()}|{st.st_mtime_ns}|{st.st_size}|raster-v{RASTER_VERSION}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]

    def mask_cache_dir(self) -> Path:
        # Keyed on the file as it was when parsed: the masks must match the loaded annotations.
        return self._cache_root / "coco" / self.split / self._cache_key

    def rasterise(self, image_id: str) -> np.ndarray:
        """The semantic mask of one image from its annotations, bypassing the cache."""
        im = self._image(image_id)
        label = np.zeros((im.height, im.width), dtype=np.uint8)
        objects: list[tuple[int, int, int, np.ndarray]] = []
        crowd = np.zeros((im.height, im.width), dtype=bool)
        for ann in self._anns[image_id]:
            m = self._ann_mask(ann, im)
            if ann.crowd:
                crowd |= m
            else:
                objects.append((-int(m.sum()), ann.ann_id, ann.class_id, m))
        for _, _, class_id, m in sorted(objects, key=lambda o: (o[0], o[1])):
            label[m] = class_id
        label[crowd & (label == 0)] = IGNORE
        return label

    def _ann_mask(self, ann: _Ann, im: _Image) -> np.ndarray:
        h, w = im.height, im.width
        seg = ann.segmentation
        where = f"annotation {ann.ann_id}"
        try:
            if isinstance(seg, list):
                polys = [p for p in seg if len(p) >= 6]
                if not polys:
                    return np.zeros((h, w), dtype=bool)
                rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
            elif isinstance(seg["counts"], list):
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                if _rle_string_total(seg["counts"]) != h * w:
                    self._fail(f"{where}: compressed RLE counts do not decode to height*width = {h * w} pixels")
                rle = {"size": [h, w], "counts": seg["counts"].encode("ascii")}
            return _decode(rle)
        except DatasetError:
            raise
        except (TypeError, ValueError, OverflowError) as err:
            self._fail(f"{where}: cannot rasterise segmentation ({err})")


def _decode(rle: dict) -> np.ndarray:
    # pycocotools (through 2.0.11) warns on every decode under numpy 2 about its own internal
    # np.array(copy=False) call; the result is correct, and the warning would flood the logs.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _write_png_atomic(path: Path, mask: np.ndarray) -> None:
    """Palette PNG (VOC colours, so the cache is viewable) written under a unique temporary
    name, since several data-loader workers may rasterise the same image at once."""
    try:
        with atomic_path(path) as tmp:
            im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
            im.putpalette(voc_palette().reshape(-1).tolist())
            im.save(tmp, format="PNG")
    except OSError:
        pass  # best effort: the mask is rasterised again next time


@DATASETS.register("coco")
def build_coco(
    data_root: Optional[Path],
    split: str,
    *,
    labels_file: Optional[Path] = None,
    cache_dir: Optional[Path] = None,
) -> SegDataset:
    if data_root is None:
        raise DatasetError(
            "--dataset coco needs --data-root DIR: a folder with <split>/ images and "
            f"{ANNOTATIONS_DIR}/instances_<split>.json (e.g. train2014/ and {ANNOTATIONS_DIR}/instances_train2014.json)"
        )
    if labels_file is not None:
        raise DatasetError(
            f"--labels-file {labels_file} is not used with --dataset coco: image-level labels come from "
            f"{ANNOTATIONS_DIR}/instances_<split>.json; drop the option"
        )
    root = Path(data_root)
    resolved = resolve_split(root, split)
    return CocoDataset(root, resolved, cache_dir=cache_dir, requested_split=split)
