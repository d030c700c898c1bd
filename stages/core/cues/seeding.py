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


@dataclass(frozen=True)
class FusionConfig:
    fg_thresh: float = 0.3  # a class seeds where its max-normalised CAM reaches this
    bg_source: str = "saliency"  # or "cam": background where every CAM is low (AffinityNet)
    bg_sal_thresh: float = 0.1  # background where saliency is below this ...
    bg_cam_thresh: float = 0.05  # ... or, with bg_source "cam", where every CAM is below this
    # a class seeds only where saliency also reaches this (0: off): a CAM spills over the
    # object onto the ground around it, where saliency is low
    fg_sal_thresh: float = 0.0

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


def cues_to_seeds(cues: np.ndarray, labels: np.ndarray, num_classes: int, grid: int = 41) -> np.ndarray:
    """DSRG/SEC localisation cues -> a seed map on their ``grid`` x ``grid`` grid.

    ``cues`` is (3, n): class, row, column of each cue (class 0 = background).
    A pixel with cues of two classes is left unlabelled rather than guessed.
    ``labels`` (the image's classes, background included) bounds which classes may appear.
    """
    cues = np.asarray(cues)
    if cues.ndim != 2 or cues.shape[0] != 3:
        raise DgcnError(f"cues must be a (3, n) array of class/row/column triplets, got shape {cues.shape}")
    cls, row, col = (cues[i].astype(np.int64) for i in range(3))
    if cues.shape[1] and (cls.max() >= num_classes or row.max() >= grid or col.max() >= grid or min(cls.min(), row.min(), col.min()) < 0):
        raise DgcnError(f"cue out of range (classes < {num_classes}, rows/columns < {grid})")
    allowed = set(int(c) for c in np.asarray(labels).reshape(-1)) | {0}
    stray = sorted(set(cls.tolist()) - allowed)
    if stray:
        raise DgcnError(f"cues name class {stray[0]}, which is not among the image's labels {sorted(allowed)}")
    hits = np.zeros((num_classes, grid, grid), dtype=bool)
    hits[cls, row, col] = True
    count = hits.sum(axis=0)
    seeds = np.full((grid, grid), IGNORE, dtype=np.uint8)
    single = count == 1
    seeds[single] = hits.argmax(axis=0)[single].astype(np.uint8)
    return seeds
