"""DGCN's two training losses (Feng, Wang, Liu 2021, eqs. 4 and 5).

Both take raw logits and apply ``log_softmax`` themselves: taking the log of
an already-computed softmax underflows to -inf for confident wrong pixels.
Both are computed in float32 even when the logits come from bf16/fp16
autocast, since the log-probabilities of rare classes need the range.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255


def balanced_seed_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Balanced seeding loss (paper eq. 4).

    ``logits``: (B, C, h, w), class 0 = background. ``target``: (B, h, w)
    integer supervision, ``IGNORE_INDEX`` (255) where unlabelled.

    Returns mean(-log H_target) over foreground-labelled pixels (target in
    1..C-1) plus mean(-log H_0) over background-labelled pixels, each mean
    taken over the whole batch. The two sets are averaged separately so a
    few foreground seeds weigh as much as a large background region. The
    printed eq. 4 omits the log in its second term; that is a typo, the
    log is used in both. A set with no pixels contributes 0, so an image
    without seeds yields a zero loss (and zero gradient), never NaN.
    """
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"logits must be (B, C, h, w) and target (B, h, w) of the same B, h, w; "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    n_classes = logits.shape[1]
    target = target.long()
    ignored = target == IGNORE_INDEX
    bad = ((target < 0) | (target >= n_classes)) & ~ignored
    if bool(bad.any()):
        raise ValueError(
            f"target holds labels outside 0..{n_classes - 1} that are not {IGNORE_INDEX} (ignore)"
        )
    logp = F.log_softmax(logits.float(), dim=1)
    # gather needs a valid index everywhere; ignored pixels are masked out below.
    safe = target.masked_fill(ignored, 0)
    picked = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    fg = (~ignored) & (target > 0)
    bg = target == 0
    fg_loss = -(picked * fg).sum() / fg.sum().clamp(min=1)
    bg_loss = -(picked * bg).sum() / bg.sum().clamp(min=1)
    return fg_loss + bg_loss


def boundary_loss(logits: Tensor, crf_q: Tensor) -> Tensor:
    """Boundary (constrain-to-boundary) loss (paper eq. 5): KL(Q || H).

    ``logits``: (B, C, h, w); ``crf_q``: (B, C, h, w), per-pixel
    distributions from the dense CRF of H (see :mod:`stages.core.crf`).
    Q is a target, not a function of the parameters, so no gradient flows
    into it. Returns sum_c Q log(Q / H) averaged over all B*h*w pixels; a
    class with Q = 0 contributes 0 (0 log 0 = 0).
    """
    if logits.shape != crf_q.shape or logits.ndim != 4:
        raise ValueError(
            f"logits and crf_q must both be (B, C, h, w); got {tuple(logits.shape)} "
            f"and {tuple(crf_q.shape)}"
        )
    q = crf_q.detach().to(device=logits.device, dtype=torch.float32)
    logp = F.log_softmax(logits.float(), dim=1)
    kl = torch.xlogy(q, q) - q * logp
    return kl.sum(dim=1).mean()
