"""A synthetic dataset in VOC layout on which every part of the method has work to do.

Each object is a large body (25-45 px) carrying, on its first instance only, a
small class-specific mark (about 5% of the body). Bodies of all classes share
one bright colour that stands out from a cluttered grey background, with a
slight per-class tint and stripe texture, so feature-space neighbours stay
within a class. A classifier with a small receptive field fires on the marks:
its CAM is precise but incomplete, which is what seed expansion is for. Some
images hold a second, unmarked instance of a class that touches no seed: only
expansion in feature space (the graph cut) can reach it, not spatial region
growing (DSRG). Everything is deterministic from the seed.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..checks import number
from ..errors import DatasetError
from ..io.images import resize_map, voc_palette
from ..options import opt
from . import DATASETS
from .voc import VocDataset, resolve_voc_root

DEMO_CLASSES = ("background", "apple", "bell", "coin", "drum", "egg")
GENERATOR_VERSION = 1

# Marks differ by colour, so a small receptive field suffices to tell classes apart.
_MARK_RGB = np.array(
    [[220, 30, 30], [30, 70, 230], [30, 170, 60], [200, 40, 200], [20, 200, 210]], dtype=np.float32
)
_BODY_RGB = np.array([205, 175, 80], dtype=np.float32)
# Per-class tint and stripe direction/period of the body texture.
_TINT = np.array([[18, -6, -8], [-8, 14, -6], [-6, -6, 18], [14, 12, -10], [-12, 6, 12]], dtype=np.float32)
_STRIPE = [(1.0, 0.0, 6.0), (0.0, 1.0, 6.0), (0.7, 0.7, 5.0), (0.7, -0.7, 5.0), (1.0, 0.0, 3.0)]


@dataclass(frozen=True)
class DemoConfig:
    seed: int = opt(0, "Generator seed: the same seed gives the same images.")
    n_train: int = opt(300, "Training images.")
    n_val: int = opt(100, "Validation images.")
    size: int = opt(128, "Image side in pixels.")
    p_second_instance: float = 0.35

    def __post_init__(self) -> None:
        number("--seed", self.seed, lo=0, integer=True)
        number("--n-train", self.n_train, lo=1, integer=True)
        number("--n-val", self.n_val, lo=1, integer=True)
        number("--size", self.size, lo=48, integer=True)  # below 48 px the objects do not fit
        number("p_second_instance", self.p_second_instance, lo=0, hi=1)


def _body_mask(rng: np.random.Generator, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    """A wobbly ellipse: radius modulated by a few low harmonics of the angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    ang = np.arctan2(dy, dx)
    ecc = rng.uniform(0.75, 1.0)
    rot = rng.uniform(0, np.pi)
    wobble = 1 + sum(rng.uniform(-0.08, 0.08) * np.cos(k * ang + rng.uniform(0, 6.28)) for k in (2, 3))
    rx, ry = r * wobble, r * ecc * wobble
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = -dx * np.sin(rot) + dy * np.cos(rot)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = rng.uniform(70, 150, size=(3, 8, 8)).astype(np.float32)
    img = np.stack(
        [resize_map(c, (size, size)) for c in coarse], axis=-1
    )
    grey = img.mean(axis=-1, keepdims=True)
    img = 0.4 * img + 0.6 * grey  # desaturate: clutter must not look like a body or a mark
    for _ in range(rng.integers(25, 45)):
        h, w = rng.integers(2, 9, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        img[y : y + h, x : x + w] = rng.uniform(40, 170) + rng.uniform(-12, 12, size=3)
    return img + rng.normal(0, 6, size=img.shape)


def _place(rng, size, radius, placed) -> Optional[tuple[float, float]]:
    for _ in range(60):
        cy, cx = rng.uniform(radius + 2, size - radius - 2, size=2)
        if all(np.hypot(cy - py, cx - px) > radius + pr + 4 for py, px, pr in placed):
            return float(cy), float(cx)
    return None


def render_image(rng: np.random.Generator, cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, mask uint8 HxW) pair."""
    size = cfg.size
    img = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    n_cls = rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])
    classes = rng.choice(len(DEMO_CLASSES) - 1, size=n_cls, replace=False) + 1
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    placed: list[tuple[float, float, float]] = []
    for cls in classes:
        n_inst = 2 if rng.random() < cfg.p_second_instance else 1
        for inst in range(n_inst):
            radius = rng.uniform(12.5, 22.5)
            at = _place(rng, size, radius, placed)
            if at is None:
                continue
            cy, cx = at
            placed.append((cy, cx, radius))
            body = _body_mask(rng, size, cy, cx, radius)
            k = cls - 1
            ay, ax, period = _STRIPE[k]
            stripes = 10 * np.sin(2 * np.pi * (ay * yy + ax * xx) / period)
            colour = _BODY_RGB + _TINT[k] + rng.normal(0, 5, size=3)
            tex = colour[None, None, :] + stripes[..., None] + rng.normal(0, 4, size=(size, size, 3))
            img[body] = tex[body]
            mask[body] = cls
            if inst == 0:
                _draw_mark(rng, img, body, k, radius)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _draw_mark(rng, img, body, k, radius) -> None:
    """A square of about 5% of the body's area, inside the body."""
    side = max(3, int(round(np.sqrt(0.05 * np.pi * radius**2))))
    ys, xs = np.nonzero(body)
    for _ in range(30):
        i = rng.integers(len(ys))
        y0, x0 = ys[i] - side // 2, xs[i] - side // 2
        if y0 >= 0 and x0 >= 0 and body[y0 : y0 + side, x0 : x0 + side].all():
            img[y0 : y0 + side, x0 : x0 + side] = _MARK_RGB[k] + rng.normal(0, 6, size=(side, side, 3))
            return


def write_demo_dataset(out: Path, cfg: DemoConfig = DemoConfig(), *, overwrite: bool = False) -> Path:
    """Write the demo dataset in VOC layout under ``out``; returns ``out``. Atomic.

    An existing ``out`` is replaced only with ``overwrite`` and only if it is a demo dataset
    (it holds ``demo.json``) or empty: never a folder this function did not make.
    """
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise DatasetError(f"{out} exists; pass --overwrite to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not (out / "demo.json").is_file()):
            raise DatasetError(f"{out} is not a demo dataset (no demo.json); refusing to replace it")
    tmp = out.with_name(out.name + f".{os.getpid()}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "JPEGImages").mkdir(parents=True)
    (tmp / "SegmentationClass").mkdir()
    (tmp / "ImageSets" / "Segmentation").mkdir(parents=True)
    pal = voc_palette().reshape(-1).tolist()
    splits = {"train": cfg.n_train, "val": cfg.n_val}
    for offset, (split, n) in enumerate(splits.items()):
        rng = np.random.default_rng([cfg.seed, offset])
        ids = []
        for i in range(n):
            image_id = f"{split}_{i:04d}"
            img, mask = render_image(rng, cfg)
            Image.fromarray(img).save(tmp / "JPEGImages" / f"{image_id}.jpg", quality=95)
            m = Image.fromarray(mask, mode="P")
            m.putpalette(pal)
            m.save(tmp / "SegmentationClass" / f"{image_id}.png")
            ids.append(image_id)
        (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    trainval = [ln for s in splits for ln in (tmp / "ImageSets/Segmentation" / f"{s}.txt").read_text().split()]
    (tmp / "ImageSets" / "Segmentation" / "trainval.txt").write_text("\n".join(trainval) + "\n")
    (tmp / "classes.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
    (tmp / "demo.json").write_text(json.dumps({"generator_version": GENERATOR_VERSION, **asdict(cfg)}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def ensure_demo_dataset(cache_dir: Path, cfg: DemoConfig = DemoConfig()) -> Path:
    root = Path(cache_dir) / "demo" / f"v{GENERATOR_VERSION}-seed{cfg.seed}-{cfg.n_train}-{cfg.n_val}-{cfg.size}"
    if not (root / "demo.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        write_demo_dataset(root, cfg, overwrite=True)
    return root


def _not_a_demo(root: Path) -> str:
    """What to do about a --data-root that is not a demo dataset: --dataset is easily
    forgotten (demo is its default), so a folder in another dataset's layout says which."""
    looks = looks_like(root)
    if looks is not None:
        shown = {"voc": "VOC", "coco": "COCO", "folder": "folder"}[looks]
        return f"{root} is not a demo dataset (no demo.json), and this looks like a {shown} dataset: pass --dataset {looks}"
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return f"{root} is not a demo dataset (no demo.json); make one with: dgcn demo-data --out {root}"
    return (f"{root} is not a demo dataset (no demo.json), nor in a layout dgcn knows (VOC: JPEGImages/ and "
            "ImageSets/Segmentation/; COCO: annotations/instances_<split>.json; folder: classes.txt and images/); "
            "pass --dataset voc, coco or folder for a folder in that layout, or make a demo dataset in a new "
            "folder with: dgcn demo-data --out DIR")


def looks_like(root: Path) -> Optional[str]:
    """The dataset whose layout ``root`` has (voc, coco, folder), or None."""
    try:
        resolve_voc_root(root)
        return "voc"
    except DatasetError:
        pass
    if any((root / "annotations").glob("instances_*.json")):
        return "coco"
    if (root / "classes.txt").is_file() and (root / "images").is_dir():
        return "folder"
    return None


@DATASETS.register("demo")
def build_demo(data_root: Optional[Path], split: str, *, labels_file: Optional[Path] = None, cache_dir: Path) -> VocDataset:
    """``data_root`` may point at a folder written by ``dgcn demo-data``; else the cached default."""
    root = data_root if data_root is not None else ensure_demo_dataset(cache_dir)
    if not (root / "demo.json").is_file():
        raise DatasetError(_not_a_demo(root))
    return VocDataset(root, split, class_names=DEMO_CLASSES, name="demo", labels_file=labels_file, cache_dir=cache_dir)
