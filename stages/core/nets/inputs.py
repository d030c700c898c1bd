"""What the networks take: RGB uint8 images as float tensors in [0, 1]; each backbone
normalises its input itself (ImageNet mean and deviation)."""
from __future__ import annotations

import numpy as np
import torch

# Padding colour of training crops: the ImageNet mean, which the backbones map to zero.
PAD_RGB = (124, 116, 104)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (a copy: the image is not shared)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
