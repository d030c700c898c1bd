"""DSRG seed growing (Huang et al., CVPR 2018), the baseline DGCN is compared with.

The rule of DSRG's own code (speedinghzl/DSRG ``pylayers.py``, ``generate_seed_step``),
run on the dense-CRF refinement of the probabilities as DSRG runs it (``UpdateSeedLayer3``'s
``refinement``: the boundary CRF's kernels at score-map size, but with the probabilities
themselves as the unary, U = -p, where the DGCN boundary loss's CRF takes U = -log p):

1. each position's candidate class is the argmax of the refined probabilities over the
   image's classes; it qualifies when that probability exceeds ``fg_thresh`` (and, for
   background, ``bg_thresh`` too);
2. a label map holds the seeds, overwritten by every qualifying candidate;
3. for each class c, the 8-connected components of (label map == c) that contain a seed
   of c (one the candidate did not overwrite) are grown: their unlabelled positions
   become c. Seeds are never relabelled.

Growing to convergence reaches exactly these components, so each class is one
``scipy.ndimage.label`` call instead of DSRG's iterative loop.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from ..cues.crf import BOUNDARY_CRF, UNARIES, CrfConfig
from ..maps import IGNORE
from .base import EXPANDERS, Expander, ExpanderConfig, _require

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class DSRGConfig(ExpanderConfig):
    """Options of ``dsrg``; defaults are DSRG's (0.99 background, 0.85 foreground).

    refined: grow on the dense-CRF refinement of the probabilities (DSRG's
        ``probs_refinement``); off: on the network's probabilities themselves.
    refine_unary: the unary energy of that CRF, whose kernels are the boundary loss's.
        ``prob`` (the published DSRG's): U = -p, at most 1 apart between classes, so the
        pairwise kernels decide and Q follows colour regions more than H does; with the
        boundary loss on, a training step runs this second CRF per image. ``neglog``:
        U = -log p, the boundary loss's own CRF, whose Q the training step reuses (no
        extra CRF; dgcn's ``dsrg`` before this option existed).
    """

    bg_thresh: float = 0.99
    fg_thresh: float = 0.85
    refined: bool = True
    refine_unary: str = "prob"

    def validate(self) -> None:
        for name in ("bg_thresh", "fg_thresh"):
            v = getattr(self, name)
            _require(0 <= v < 1, "dsrg", f"{name} must be in [0, 1), got {v}")
        _require(self.refine_unary in UNARIES, "dsrg",
                 f"refine_unary must be {' or '.join(UNARIES)}, got {self.refine_unary!r}")


def grow_regions(
    probs: np.ndarray, seeds: np.ndarray, present: np.ndarray, bg_thresh: float, fg_thresh: float
) -> np.ndarray:
    """One image: (K+1, h, w) probabilities, (h, w) seeds, (K+1,) bool -> grown (h, w) labels."""
    classes = np.flatnonzero(present)
    masked = np.where(present[:, None, None], probs, -np.inf)
    winner = masked.argmax(0)
    top = masked.max(0)
    qualifies = (top > fg_thresh) & ((winner != 0) | (top > bg_thresh))
    label_map = np.where(qualifies, winner, seeds.astype(np.int64))
    free = seeds == IGNORE
    out = seeds.astype(np.int64)
    for c in classes:
        region = label_map == c
        anchors = region & (seeds == c)
        if not anchors.any():
            continue
        comp, _ = ndimage.label(region, structure=_EIGHT)
        reached = np.unique(comp[anchors])
        # candidates win one class each (argmax), so classes never overwrite each other
        out[free & np.isin(comp, reached)] = c
    return out


@EXPANDERS.register("dsrg")
class DSRGExpander(Expander):
    """Seeded region growing on the (refined) probability maps with spatial 8-connectivity.

    Seeds are copied unchanged; background grows like any class. Differences from the
    DSRG code: growth is computed in one connected-components pass per class (same fixed
    point as its iterative growing); the CRF gets the exact softmax where DSRG's gets its
    softmax plus 1e-4, renormalised (under U = -p a per-pixel shift, which mean field
    ignores, and a scale of 1 / (1 + 1e-4 C) on the unary). Features are not used and may be None.
    """

    name = "dsrg"
    config_class = DSRGConfig
    config: DSRGConfig

    @property
    def refine_crf(self) -> CrfConfig | None:
        if not self.config.refined:
            return None
        return replace(BOUNDARY_CRF, unary=self.config.refine_unary)

    def _expand(self, features, probs, seeds, present):
        p = probs.float().cpu().numpy()
        s = seeds.cpu().numpy()
        pres = present.cpu().numpy()
        out = np.stack([
            grow_regions(p[i], s[i], pres[i], self.config.bg_thresh, self.config.fg_thresh)
            for i in range(p.shape[0])
        ])
        return torch.from_numpy(out)
