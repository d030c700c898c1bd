"""DSRG seed growing (Huang et al., CVPR 2018), the baseline DGCN is compared with.

An unlabelled pixel joins class c when the network's argmax over the image's
classes is c, H_c exceeds the class's threshold, and it is 8-connected to a seed
of c through pixels that also qualify. Growing to convergence reaches exactly the
connected components of (seed of c OR candidate for c) that hold a seed of c, so
each class is one ``scipy.ndimage.label`` call instead of an iterative loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .base import EXPANDERS, UNLABELLED, Expander, ExpanderConfig, _require

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class DSRGConfig(ExpanderConfig):
    """Options of ``dsrg``; defaults are DSRG's (0.99 background, 0.85 foreground)."""

    bg_thresh: float = 0.99
    fg_thresh: float = 0.85

    def validate(self) -> None:
        for name in ("bg_thresh", "fg_thresh"):
            v = getattr(self, name)
            _require(0 <= v < 1, "dsrg", f"{name} must be in [0, 1), got {v}")


def grow_regions(
    probs: np.ndarray, seeds: np.ndarray, present: np.ndarray, bg_thresh: float, fg_thresh: float
) -> np.ndarray:
    """One image: (K+1, h, w) probabilities, (h, w) seeds, (K+1,) bool -> grown (h, w) labels."""
    classes = np.flatnonzero(present)
    masked = np.where(present[:, None, None], probs, -np.inf)
    winner = masked.argmax(0)
    free = seeds == UNLABELLED
    out = seeds.astype(np.int64)
    for c in classes:
        seed_c = seeds == c
        if not seed_c.any():
            continue
        thresh = bg_thresh if c == 0 else fg_thresh
        cand = free & (winner == c) & (probs[c] > thresh)
        comp, _ = ndimage.label(seed_c | cand, structure=_EIGHT)
        reached = np.unique(comp[seed_c])
        # Candidates win only one class each (argmax), so classes never overwrite each other.
        out[cand & np.isin(comp, reached[reached > 0])] = c
    return out


@EXPANDERS.register("dsrg")
class DSRGExpander(Expander):
    """Seeded region growing on the probability maps with spatial 8-connectivity.

    Seeds are copied unchanged; background grows like any class (with
    ``bg_thresh``). Differences from the DSRG code: growth is computed in one
    connected-components pass per class (same fixed point as its iterative
    growing), and the argmax is over the image's present classes only.
    Features are not used and may be None.
    """

    name = "dsrg"
    config_class = DSRGConfig
    config: DSRGConfig

    def _expand(self, features, probs, seeds, present):
        p = probs.float().cpu().numpy()
        s = seeds.cpu().numpy()
        pres = present.cpu().numpy()
        out = np.stack([
            grow_regions(p[i], s[i], pres[i], self.config.bg_thresh, self.config.fg_thresh)
            for i in range(p.shape[0])
        ])
        return torch.from_numpy(out)
