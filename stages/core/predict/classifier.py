"""The CAM classifier at test time: loading it from a checkpoint, and its class activation
maps at several scales and their mirrors."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..device import place
from ..io.checkpoint import load_checkpoint, load_model_state, require_kind
from ..maps import resize_scores
from ..nets import Classifier, build_classifier
from ..nets.inputs import to_tensor


def load_classifier(path: Path, device: torch.device) -> Classifier:
    state = load_checkpoint(path)
    mc = state["model_config"]
    require_kind(state, "classifier", path)
    model = build_classifier(mc["backbone"], mc["num_classes"])
    load_model_state(model, state["model"], path)
    return place(model, device).eval()


@torch.no_grad()
def multiscale_cam(model: Classifier, image: np.ndarray, classes: Sequence[int], scales: Sequence[float], device: torch.device) -> np.ndarray:
    """(n, H, W) float32 CAMs of the given classes (1-based ids), ReLU'd, max-normalised."""
    h, w = image.shape[:2]
    if len(classes) == 0:
        return np.zeros((0, h, w), dtype=np.float32)
    x = to_tensor(image)[None].to(device)
    idx = torch.as_tensor([c - 1 for c in classes], device=device)
    acc = torch.zeros((len(classes), h, w), device=device)
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False, recompute_scale_factor=False)
        both = torch.cat([xs, xs.flip(-1)])
        cams = F.relu(model.cam(both)[:, idx].float())
        cams = cams[0] + cams[1].flip(-1)
        acc += resize_scores(cams[None], (h, w))[0]
    acc /= acc.flatten(1).amax(dim=1).clamp_min(1e-5)[:, None, None]
    return acc.cpu().numpy()
