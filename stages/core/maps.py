"""Label maps and score maps: the ignore label and the one way each is resized.

A label map holds class ids (uint8 / long, ``IGNORE`` where nothing is said) and is
resized by nearest neighbour, so ids are never interpolated; a score map (logits,
probabilities, CAMs) is resized bilinearly with ``align_corners=False``. Sizes are
always (height, width).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# unlabelled / ignored pixels in every label map: seeds, proxy labels, masks, crop padding
IGNORE = 255


def resize_scores(scores: Tensor, size: Sequence[int]) -> Tensor:
    """(B, C, h, w) score maps (or images) at (H, W), bilinearly."""
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


def resize_labels(labels: Tensor, size: Sequence[int]) -> Tensor:
    """(B, h, w) label maps at (H, W) by nearest neighbour (``IGNORE`` stays ``IGNORE``)."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def present_matrix(label_vec: Tensor) -> Tensor:
    """(B, K) multi-hot foreground labels -> (B, K+1) bool with background always present."""
    bg = torch.ones((label_vec.shape[0], 1), dtype=torch.bool, device=label_vec.device)
    return torch.cat([bg, label_vec > 0.5], dim=1)


def supervision_mask(target: Tensor, n_classes: int) -> Tensor:
    """(B, h, w) labels (``IGNORE`` = none) or (B, C, h, w) multi-hot -> (B, C, h, w) bool."""
    if target.ndim == 4:
        if target.shape[1] != n_classes:
            raise ValueError(f"multi-hot target has {target.shape[1]} classes, logits {n_classes}")
        return target.bool()
    target = target.long()
    ignored = target == IGNORE
    bad = ((target < 0) | (target >= n_classes)) & ~ignored
    if bool(bad.any()):
        raise ValueError(f"target holds labels outside 0..{n_classes - 1} that are not {IGNORE} (ignore)")
    onehot = F.one_hot(target.masked_fill(ignored, 0), n_classes).permute(0, 3, 1, 2).bool()
    return onehot & ~ignored[:, None]
