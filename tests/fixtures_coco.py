"""A tiny COCO-format dataset on disk, for the coco dataset tests and end-to-end runs.

``write_coco_fixture(root)`` writes ``root/<split>/*.jpg`` (64x48 photos of coloured shapes drawn
exactly where the annotations are) and ``root/annotations/instances_<split>.json`` with the full
80-category COCO list (official ids, with their gaps). The first five images are scripted, each
exercising one case of the format; the rest are random shapes from ``seed``:

- ``OVERLAP_IMAGE``: a large person polygon with a smaller two-part car polygon on top of it.
- ``RLE_IMAGE``: a dog as uncompressed RLE (counts list) and a toothbrush as compressed RLE.
- ``CROWD_IMAGE``: a person polygon and a crowd region of people that partly covers it.
- ``EMPTY_IMAGE``: no annotation at all.
- ``CROWD_ONLY_IMAGE``: only a crowd region of cars, so no image-level label.
"""
from __future__ import annotations

import colorsys
import json
import random
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

WIDTH, HEIGHT = 64, 48

COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"),
    (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"),
    (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"),
    (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"),
    (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"),
    (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"),
    (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)

PERSON, CAR, DOG, TOOTHBRUSH = 1, 3, 18, 90

# COCO image ids of the scripted images (gappy, like the real ones).
OVERLAP_IMAGE, RLE_IMAGE, CROWD_IMAGE, EMPTY_IMAGE, CROWD_ONLY_IMAGE = 9, 25, 30, 34, 36
SCRIPTED_IMAGES = (OVERLAP_IMAGE, RLE_IMAGE, CROWD_IMAGE, EMPTY_IMAGE, CROWD_ONLY_IMAGE)

# Annotation ids of the scripted annotations.
ANN_PERSON_BIG, ANN_CAR_SMALL, ANN_DOG_RLE, ANN_TOOTHBRUSH_RLE = 101, 102, 201, 202
ANN_PERSON, ANN_CROWD, ANN_CAR_CROWD = 301, 302, 501

# Exact pixel counts of the RLE regions (rectangles, so known by hand).
DOG_BOX = (10, 30, 5, 15)  # rows [10, 30), cols [5, 15): 200 pixels
TOOTHBRUSH_BOX = (30, 42, 40, 55)  # rows [30, 42), cols [40, 55): 180 pixels
CROWD_BOX = (0, 48, 0, 40)  # rows [0, 48), cols [0, 40): 1920 pixels
CAR_CROWD_BOX = (5, 25, 10, 50)  # 800 pixels


def file_name(split: str, coco_id: int) -> str:
    """2014 splits use the long COCO_<split>_ names, later ones the bare zero-padded id."""
    return f"COCO_{split}_{coco_id:012d}.jpg" if "2014" in split else f"{coco_id:012d}.jpg"


def image_stem(split: str, coco_id: int) -> str:
    return Path(file_name(split, coco_id)).stem


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    r0, r1, c0, c1 = box
    m = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def uncompressed_rle(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE: column-major runs starting with a (possibly empty) run of 0s."""
    flat = np.asarray(m, dtype=np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def compressed_rle(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rect(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def category_colour(cat_id: int) -> tuple[int, int, int]:
    # Golden-ratio hue steps over the contiguous index keep the 80 colours apart; over the
    # official ids, 1 and 90 would be near-identical (89 is a Fibonacci number).
    index = [cid for cid, _ in COCO_CATEGORIES].index(cat_id)
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _scripted_annotations() -> dict[int, list[dict]]:
    return {
        OVERLAP_IMAGE: [
            {"id": ANN_PERSON_BIG, "category_id": PERSON, "iscrowd": 0, "segmentation": [rect(4, 4, 44, 40)]},
            {
                "id": ANN_CAR_SMALL,
                "category_id": CAR,
                "iscrowd": 0,
                "segmentation": [rect(20, 10, 36, 26), [50, 30, 60, 30, 55, 44]],
            },
        ],
        RLE_IMAGE: [
            {"id": ANN_DOG_RLE, "category_id": DOG, "iscrowd": 0, "segmentation": uncompressed_rle(box_mask(DOG_BOX))},
            {
                "id": ANN_TOOTHBRUSH_RLE,
                "category_id": TOOTHBRUSH,
                "iscrowd": 0,
                "segmentation": compressed_rle(box_mask(TOOTHBRUSH_BOX)),
            },
        ],
        CROWD_IMAGE: [
            {"id": ANN_PERSON, "category_id": PERSON, "iscrowd": 0, "segmentation": [rect(30, 8, 60, 40)]},
            {"id": ANN_CROWD, "category_id": PERSON, "iscrowd": 1, "segmentation": uncompressed_rle(box_mask(CROWD_BOX))},
        ],
        EMPTY_IMAGE: [],
        CROWD_ONLY_IMAGE: [
            {
                "id": ANN_CAR_CROWD,
                "category_id": CAR,
                "iscrowd": 1,
                "segmentation": uncompressed_rle(box_mask(CAR_CROWD_BOX)),
            },
        ],
    }


def _random_annotations(rng: random.Random, first_ann_id: int) -> list[dict]:
    anns = []
    for k in range(rng.randint(1, 3)):
        cat_id = rng.choice(COCO_CATEGORIES)[0]
        x0, y0 = rng.randint(0, WIDTH - 16), rng.randint(0, HEIGHT - 12)
        x1, y1 = rng.randint(x0 + 8, min(WIDTH, x0 + 40)), rng.randint(y0 + 8, min(HEIGHT, y0 + 30))
        if rng.random() < 0.5:
            poly = rect(x0, y0, x1, y1)
        else:
            poly = [x0, y1, x1, y1, (x0 + x1) / 2, y0]
        anns.append({"id": first_ann_id + k, "category_id": cat_id, "iscrowd": 0, "segmentation": [poly]})
    return anns


def _ann_pixels(seg, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    # pycocotools warns on every decode under numpy 2 about its own internals.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _draw_image(path: Path, anns: list[dict], rng: random.Random) -> None:
    nrng = np.random.default_rng(rng.getrandbits(32))
    # A dim, noisy background so that the shapes are what a classifier can pick up.
    base = np.array([rng.randint(40, 90), rng.randint(40, 90), rng.randint(40, 90)], dtype=np.int16)
    pixels = base + nrng.integers(-12, 13, size=(HEIGHT, WIDTH, 3), dtype=np.int16)
    for ann in sorted(anns, key=lambda a: -int(_ann_pixels(a["segmentation"], HEIGHT, WIDTH).sum())):
        m = _ann_pixels(ann["segmentation"], HEIGHT, WIDTH)
        colour = np.array(category_colour(ann["category_id"]), dtype=np.int16)
        if ann["iscrowd"]:
            # A crowd looks like many small blobs of the class colour.
            m = m & (nrng.random((HEIGHT, WIDTH)) < 0.6)
        pixels[m] = colour + nrng.integers(-10, 11, size=(int(m.sum()), 3), dtype=np.int16)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    # Outline polygons too, so that their edges match the annotation even after JPEG blur.
    draw = ImageDraw.Draw(img)
    for ann in anns:
        if isinstance(ann["segmentation"], list) and not ann["iscrowd"]:
            for poly in ann["segmentation"]:
                draw.polygon(poly, outline=category_colour(ann["category_id"]))
    img.save(path, format="JPEG", quality=95)


def write_coco_fixture(root: Path, split: str = "train2014", n_images: int = 8, seed: int = 0) -> Path:
    """Write a COCO-format split under ``root`` and return ``root`` (the ``--data-root``).

    ``n_images`` counts the five scripted images plus random ones; calling it again with another
    split adds that split beside the first.
    """
    if n_images < len(SCRIPTED_IMAGES):
        raise ValueError(f"n_images must be at least {len(SCRIPTED_IMAGES)} (the scripted cases)")
    root = Path(root)
    rng = random.Random(f"{split}:{seed}")
    images_dir = root / split
    images_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)

    per_image = _scripted_annotations()
    for k in range(n_images - len(SCRIPTED_IMAGES)):
        coco_id = 100 + 7 * k
        per_image[coco_id] = _random_annotations(rng, first_ann_id=1000 + 10 * k)

    images, annotations = [], []
    for coco_id, anns in per_image.items():
        name = file_name(split, coco_id)
        images.append({"id": coco_id, "file_name": name, "height": HEIGHT, "width": WIDTH})
        _draw_image(images_dir / name, anns, rng)
        for ann in anns:
            m = _ann_pixels(ann["segmentation"], HEIGHT, WIDTH)
            rows, cols = np.nonzero(m)
            bbox = [float(cols.min()), float(rows.min()), float(np.ptp(cols) + 1), float(np.ptp(rows) + 1)]
            annotations.append({**ann, "image_id": coco_id, "area": float(m.sum()), "bbox": bbox})

    data = {
        "info": {"description": "dgcn test fixture", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": ""} for cid, name in COCO_CATEGORIES],
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root
