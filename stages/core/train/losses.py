"""DGCN's two training losses (Feng, Wang, Liu 2021, eqs. 4 and 5), as the published code
computes them (hustvl/DGCN ``train.py`` ``cal_seeding_loss`` / ``constrain_loss``, which are
DSRG's ``SeedLossLayer3`` / ``ConstrainLossLayer``).

Both take raw logits and apply ``log_softmax`` themselves: taking the log of
an already-computed softmax underflows to -inf for confident wrong pixels
(the published code adds 1e-7 to every probability instead; the difference is
below 1e-6 for probabilities above 0.1). Both are computed in float32 even when
the logits come from bf16/fp16 autocast, since the log-probabilities of rare
classes need the range.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..maps import supervision_mask

#: DSRG's clip of the ratio Q/H in the boundary loss (``ConstrainLossLayer``)
RATIO_CLIP = (0.05, 20.0)


def balanced_seed_loss(logits: Tensor, target: Tensor, per_image: bool = True) -> Tensor:
    """Balanced seeding loss (paper eq. 4).

    ``logits``: (B, C, h, w), class 0 = background. ``target``: (B, h, w) integer
    supervision with ``IGNORE`` (255) where unlabelled, or (B, C, h, w) multi-hot
    (the graph cut's supervision, where a position may carry two classes).

    Foreground term: sum of -log H_c over the (position, class) pairs labelled with a
    foreground class, divided by their count; background term likewise for class 0;
    the loss is their sum. ``per_image`` (the published code) divides each image's sums
    by that image's own counts and averages over the batch, so an image with few seeds
    weighs as much as one with many; otherwise the sums and counts are pooled over the
    batch. A set with no pixels contributes 0 (never NaN). The printed eq. 4 omits the
    log in its second term; that is a typo, the log is used in both.
    """
    if logits.ndim != 4 or target.ndim not in (3, 4) or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[-2:]:
        raise ValueError(
            f"logits must be (B, C, h, w) and target (B, h, w) or (B, C, h, w) of the same B, h, w; "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    mask = supervision_mask(target, logits.shape[1]).float()
    logp = F.log_softmax(logits.float(), dim=1)
    picked = mask * logp
    dims = (1, 2) if per_image else (0, 1, 2)
    bg_sum, bg_n = picked[:, 0].sum(dims), mask[:, 0].sum(dims)
    fg_sum, fg_n = picked[:, 1:].sum(1).sum(dims), mask[:, 1:].sum(1).sum(dims)
    bg = -(bg_sum / bg_n.clamp(min=1)).mean()
    fg = -(fg_sum / fg_n.clamp(min=1)).mean()
    return fg + bg


def boundary_loss(logits: Tensor, crf_q: Tensor, ratio_clip: Optional[tuple[float, float]] = RATIO_CLIP) -> Tensor:
    """Boundary (constrain-to-boundary) loss (paper eq. 5): KL(Q || H).

    ``logits``: (B, C, h, w); ``crf_q``: (B, C, h, w), per-pixel distributions from
    the dense CRF of H (see :mod:`stages.core.cues.crf`). Q is a target: no gradient flows
    into it. Returns the mean over all B*h*w pixels of sum_c Q log(r), r = Q / H.

    ``ratio_clip`` (lo, hi), DSRG's and the published code's (0.05, 20) by default,
    clips r into [lo, hi] first, which also stops the gradient where r is outside (a
    pixel where the CRF and the network disagree by more than 20x pulls no harder than
    one at 20x). ``None`` gives the plain KL. A class with Q = 0 contributes 0.
    """
    if logits.shape != crf_q.shape or logits.ndim != 4:
        raise ValueError(
            f"logits and crf_q must both be (B, C, h, w); got {tuple(logits.shape)} "
            f"and {tuple(crf_q.shape)}"
        )
    q = crf_q.detach().to(device=logits.device, dtype=torch.float32)
    logp = F.log_softmax(logits.float(), dim=1)
    if ratio_clip is None:
        kl = torch.xlogy(q, q) - q * logp
    else:
        lo, hi = ratio_clip
        # log(Q) - log(H) clamped in log space: the same as log(clip(Q/H)), gradient included;
        # Q = 0 gives -inf, clamped to log(lo) and then multiplied by 0
        kl = q * (torch.log(q) - logp).clamp(math.log(lo), math.log(hi))
    return kl.sum(dim=1).mean()


def supervision_stats(logits: Tensor, supervision: Tensor, seeds: Tensor, per_image: bool = True) -> dict[str, float]:
    """What an expander made of a batch's seeds, as the run's log records it (no ground truth:
    how much it changed, not whether rightly). ``supervision`` as ``balanced_seed_loss``'s
    target, ``seeds`` (B, h, w) with ``IGNORE`` where unlabelled.

    ``added``: the fraction of unseeded positions the supervision labels. ``seeds_changed``: the
    fraction of seeded positions whose supervised classes differ from the seed (overridden,
    cleared or given a second class). ``seed_grad_share``: the seeded positions' share of the
    seeding loss's gradient (L1 over classes, summed over positions): 1 while the seeds alone
    supervise, falling as the expander's positions take the loss's per-image normalisation."""
    n = logits.shape[1]
    sup, seed = supervision_mask(supervision, n), supervision_mask(seeds, n)
    seeded = seed.any(1)
    added = (sup.any(1) & ~seeded).sum() / (~seeded).sum().clamp(min=1)
    changed = ((sup != seed).any(1) & seeded).sum() / seeded.sum().clamp(min=1)
    with torch.enable_grad():
        x = logits.detach().float().requires_grad_(True)
        (grad,) = torch.autograd.grad(balanced_seed_loss(x, supervision, per_image), x)
    norm = grad.abs().sum(1)
    total = float(norm.sum())
    share = float((norm * seeded).sum()) / total if total > 0 else 1.0
    return {"added": float(added), "seeds_changed": float(changed), "seed_grad_share": share}
