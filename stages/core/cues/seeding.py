"""Seed maps: fusing CAMs with a background cue, and importing other tools' cues.

A seed map is uint8 (H, W): a class id where seeded (0 = background), 255 where
unlabelled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import checks
from ..errors import DgcnError
from ..maps import IGNORE
from ..options import opt


@dataclass(frozen=True)
class FusionConfig:
    fg_thresh: float = opt(0.3, "A class seeds where its normalised CAM reaches this.")
    # "cam": background where every CAM is low (AffinityNet)
    bg_source: str = opt("saliency", "saliency, or cam: background where every CAM is low.")
    bg_sal_thresh: float = opt(0.1, "Background where saliency is below this.")
    bg_cam_thresh: float = opt(0.05, "With --bg-source cam: background where every CAM is below this.")
    # a CAM spills over the object onto the ground around it, where saliency is low
    fg_sal_thresh: float = opt(0.0, "A class seeds only where saliency also reaches this (0: off); where the CAM fires "
                                    "on non-salient pixels they stay unlabelled.")

    def __post_init__(self) -> None:
        if self.bg_source not in ("saliency", "cam"):
            raise DgcnError(f"unknown background source {self.bg_source!r}; use saliency or cam")
        # normalised CAMs and saliency live in [0, 1]: a threshold above 1 seeds no class at all
        checks.number("--fg-thresh", self.fg_thresh, lo=0, hi=1, lo_open=True)
        checks.number("--bg-sal-thresh", self.bg_sal_thresh, lo=0, hi=1)
        checks.number("--bg-cam-thresh", self.bg_cam_thresh, lo=0, hi=1)
        checks.number("--fg-sal-thresh", self.fg_sal_thresh, lo=0, hi=1)


def fuse_seeds(cam: np.ndarray, classes: np.ndarray, saliency: Optional[np.ndarray], cfg: FusionConfig) -> np.ndarray:
    """Foreground where a class's CAM passes ``fg_thresh`` (overlaps go to the higher
    score) and, with ``fg_sal_thresh``, saliency passes it too; background where the cue
    says so and no class fires; 255 elsewhere."""
    h, w = cam.shape[-2:]
    seeds = np.full((h, w), IGNORE, dtype=np.uint8)
    cam = cam.astype(np.float32)
    needs_saliency = cfg.bg_source == "saliency" or cfg.fg_sal_thresh > 0
    if needs_saliency and saliency is None:
        raise DgcnError("background from saliency, or --fg-sal-thresh, needs a saliency artifact (dgcn saliency-bg); "
                        "or use --bg-source cam")
    if needs_saliency and saliency.shape != (h, w):
        raise DgcnError(f"saliency map is {saliency.shape}, CAMs are {(h, w)}: make both for the same images")
    sal = saliency.astype(np.float32) if needs_saliency else None
    if len(classes):
        best = cam.argmax(axis=0)
        top = cam.max(axis=0)
        fires = top >= cfg.fg_thresh
        quiet = ~fires
        if cfg.fg_sal_thresh > 0:
            fires &= sal >= cfg.fg_sal_thresh
        seeds[fires] = np.asarray(classes, dtype=np.uint8)[best[fires]]
        cam_max = top
    else:
        quiet = np.ones((h, w), dtype=bool)
        cam_max = np.zeros((h, w), dtype=np.float32)
    if cfg.bg_source == "saliency":
        bg = sal < cfg.bg_sal_thresh
    else:
        bg = cam_max < cfg.bg_cam_thresh
    seeds[quiet & bg] = 0
    return seeds


#: what a pixel cued for two classes becomes: "higher", the higher class index, as the published
#: loader gives it (hustvl/DGCN ``dataset.py`` writes each class's cue pixels in turn, in
#: increasing class index, so the last write wins); "unlabelled": 255, no guess
CUE_OVERLAPS = ("higher", "unlabelled")


def cues_to_seeds(cues, labels: np.ndarray, num_classes: int, grid: int = 41, overlap: str = "higher") -> np.ndarray:
    """DSRG/SEC localisation cues -> a uint8 seed map on their ``grid`` x ``grid`` grid.

    ``cues`` is what DSRG's ``generate_train_gt.py`` stores: ``np.where`` of a (classes, grid,
    grid) cue volume, i.e. a tuple of three index arrays (class, row, column), class 0 the
    background; a (3, n) array of the same triplets is accepted too. ``labels`` (the image's
    classes; background may or may not be listed) bounds which classes may appear. A pixel
    with cues of several classes takes the highest of them by default (``overlap="higher"``,
    the published loader's result), or is left unlabelled (``overlap="unlabelled"``).
    """
    if overlap not in CUE_OVERLAPS:
        raise DgcnError(f"unknown cue overlap rule {overlap!r}; use {' or '.join(CUE_OVERLAPS)}")
    cls, row, col = _cue_triplets(cues)
    if cls.size and (cls.max() >= num_classes or row.max() >= grid or col.max() >= grid or min(cls.min(), row.min(), col.min()) < 0):
        raise DgcnError(f"cue out of range (classes < {num_classes}, rows/columns < {grid})")
    allowed = set(int(c) for c in np.asarray(labels).reshape(-1)) | {0}
    stray = sorted(set(cls.tolist()) - allowed)
    if stray:
        raise DgcnError(f"cues name class {stray[0]}, which is not among the image's labels {sorted(allowed)}")
    hits = np.zeros((num_classes, grid, grid), dtype=bool)
    hits[cls, row, col] = True
    count = hits.sum(axis=0)
    seeds = np.full((grid, grid), IGNORE, dtype=np.uint8)
    if overlap == "higher":
        # the highest cued class: the first hit scanning the classes downwards
        top = num_classes - 1 - hits[::-1].argmax(axis=0)
        seeds[count > 0] = top[count > 0].astype(np.uint8)
    else:
        single = count == 1
        seeds[single] = hits.argmax(axis=0)[single].astype(np.uint8)
    return seeds


def _cue_triplets(cues) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, row, column) int64 arrays from np.where's tuple or a (3, n) array."""
    if isinstance(cues, (tuple, list)):
        parts = [np.asarray(c) for c in cues]
        if len(parts) != 3 or any(p.ndim != 1 for p in parts) or len({p.shape[0] for p in parts}) != 1:
            shapes = ", ".join(str(p.shape) for p in parts)
            raise DgcnError(f"cues must be three index arrays (class, row, column) of one length, got {len(parts)} of shapes {shapes}")
    else:
        arr = np.asarray(cues)
        if arr.ndim != 2 or arr.shape[0] != 3:
            raise DgcnError(f"cues must be (class, row, column) index arrays or a (3, n) array, got shape {arr.shape}")
        parts = list(arr)
    out = []
    for p in parts:
        # np.where gives integers; a float copy of them is accepted, a fraction is not an index
        if p.size and not (np.issubdtype(p.dtype, np.integer) or (np.issubdtype(p.dtype, np.floating) and np.all(p == np.round(p)))):
            raise DgcnError(f"cue indices must be integers, got {p.dtype}")
        out.append(p.astype(np.int64))
    return out[0], out[1], out[2]
