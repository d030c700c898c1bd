"""Loading a trained segmentation network and predicting full-resolution probabilities.

Shared by every stage that runs a trained DeepLab over whole images (``infer``,
``graphcut-label``, ``retrain``), so all of them load checkpoints with the same
checks and predict with the same test-time protocol.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..device import autocast, place
from ..errors import CheckpointError
from ..io.artifacts import short_class_list
from ..io.checkpoint import load_checkpoint, load_model_state, require_kind
from ..maps import resize_scores
from ..nets import DeepLabV2, build_segmenter
from ..nets.inputs import to_tensor

# The paper's test protocol (section 1.6 of the guide).
TEST_SCALES = (0.75, 1.0, 1.25)


@dataclass(frozen=True)
class Segmenter:
    """A loaded segmentation checkpoint: the network (in eval mode) and what it was trained for."""

    model: DeepLabV2
    class_names: Optional[tuple[str, ...]]  # background first; None if the checkpoint does not say
    config: dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def provenance(self) -> dict[str, Any]:
        return run_provenance(self.config)

    def names_or_default(self) -> tuple[str, ...]:
        """The class names, or ``background, class1, ...`` for a checkpoint that does not record them."""
        if self.class_names is not None:
            return self.class_names
        return ("background", *(f"class{i}" for i in range(1, self.num_classes)))

    def check_classes(self, class_names: Sequence[str], dataset: str = "the dataset") -> None:
        """Refuse a checkpoint trained for another class list than the data it is run on."""
        names = tuple(class_names)
        if self.num_classes != len(names):
            raise CheckpointError(
                f"{self.path} predicts {self.num_classes} classes but {dataset} has "
                f"{short_class_list(names)}; use a checkpoint trained on {dataset}"
            )
        if self.class_names is not None and self.class_names != names:
            raise CheckpointError(
                f"{self.path} was trained for {short_class_list(self.class_names)}, "
                f"but {dataset} has {short_class_list(names)}; use a checkpoint trained on {dataset}"
            )


def run_provenance(config: Mapping[str, Any]) -> dict[str, Any]:
    """What made a segmentation network, from its run's config: the stage (train or retrain),
    the expander, the training seed and, for a retrained one, its teacher's provenance.
    Artifacts made with the network carry it, so a report can name its rows."""
    run = config.get("run") if isinstance(config.get("run"), Mapping) else {}
    out = {"stage": config.get("stage"), "expander": config.get("expander"),
           "expander_options": config.get("expander_options") or None, "seed": run.get("seed"),
           # a retraining's start (teacher's weights or --weights): two regimes, two networks
           "init": config.get("init") if config.get("stage") == "retrain" else None}
    if isinstance(config.get("teacher"), Mapping):
        out["teacher"] = dict(config["teacher"])
    return {k: v for k, v in out.items() if v is not None}


def load_segmenter_checkpoint(path: Path, device: torch.device | str = "cpu") -> Segmenter:
    """Load a checkpoint written by ``dgcn train`` / ``dgcn retrain``; one-line errors otherwise."""
    path = Path(path)
    state = load_checkpoint(path)
    require_kind(state, "segmenter", path)
    mc = state["model_config"]
    try:
        # checkpoints written before the head became an option all had the ASPP head
        model = build_segmenter(mc["backbone"], int(mc["num_classes"]), graph_layers=mc["graph_layers"],
                                head=mc.get("head", "aspp"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its model_config cannot rebuild a network ({err.__class__.__name__}: {err})") from None
    load_model_state(model, state["model"], path)
    config = state.get("config") or {}
    if not isinstance(config, dict):
        config = {}
    names = config.get("class_names")
    class_names = tuple(str(n) for n in names) if isinstance(names, (list, tuple)) else None
    if class_names is not None and len(class_names) != model.num_classes:
        raise CheckpointError(
            f"{path} is inconsistent: its config lists {len(class_names)} classes "
            f"but the network predicts {model.num_classes}"
        )
    return Segmenter(model=place(model, device).eval(), class_names=class_names, config=config, path=path)


def load_segmenter(path: Path, device: torch.device | str = "cpu") -> DeepLabV2:
    """The network of a ``dgcn train`` / ``dgcn retrain`` checkpoint, on ``device``, in eval mode."""
    return load_segmenter_checkpoint(path, device).model


#: how multi-scale test scores are combined: mean of softmaxes, or the published sum of logits
COMBINE = ("softmax", "logits")


def _scaled_size(h: int, w: int, s: float) -> tuple[int, int]:
    # A scaled-down tiny image must still hold at least one pixel.
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


@torch.no_grad()
def predict_probs_batch(
    model: DeepLabV2,
    images_uint8: Sequence[np.ndarray],
    scales: Sequence[float] = TEST_SCALES,
    flip: bool = True,
    device: Optional[torch.device] = None,
    combine: str = "softmax",
) -> list[np.ndarray]:
    """:func:`predict_probs` for several images; images of the same size share forward passes."""
    if not scales:
        raise ValueError("at least one scale is needed")
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    if device is None:
        device = next(model.parameters()).device
    out: list[Optional[np.ndarray]] = [None] * len(images_uint8)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images_uint8):
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"images must be (H, W, 3) uint8 RGB, got shape {im.shape}")
        groups.setdefault(im.shape[:2], []).append(i)
    for (h, w), idx in groups.items():
        x = torch.stack([to_tensor(images_uint8[i]) for i in idx]).to(device)
        acc = torch.zeros((len(idx), model.num_classes, h, w), device=device)
        for s in scales:
            size = _scaled_size(h, w, s)
            xs = x if size == (h, w) else resize_scores(x, size)
            inputs = torch.cat([xs, xs.flip(-1)]) if flip else xs
            with autocast(device):
                logits = model(inputs)
            # "softmax": softmax at score-map size, then bilinear upsampling, a convex
            # combination of distributions, averaged. "logits": the published code's
            # evaluate.py, raw scores upsampled and summed, one softmax at the end.
            scores = logits.float().softmax(dim=1) if combine == "softmax" else logits.float()
            scores = resize_scores(scores, (h, w))
            if flip:
                scores = scores[: len(idx)] + scores[len(idx) :].flip(-1)
            acc += scores
        if combine == "softmax":
            acc /= len(scales) * (2 if flip else 1)
        else:
            acc = acc.softmax(dim=1)
        for j, i in enumerate(idx):
            out[i] = acc[j].cpu().numpy()
    return out  # type: ignore[return-value]


def predict_probs(
    model: DeepLabV2,
    image_uint8: np.ndarray,
    scales: Sequence[float] = TEST_SCALES,
    flip: bool = True,
    device: Optional[torch.device] = None,
    combine: str = "softmax",
) -> np.ndarray:
    """Class probabilities (C, H, W) float32 at the image's own size.

    The mean over ``scales`` (and, with ``flip``, the horizontal mirror of each)
    of the network's softmax, each upsampled bilinearly to the image size.
    ``image_uint8`` is (H, W, 3) RGB of any size. ``device`` defaults to the model's.
    """
    return predict_probs_batch(model, [image_uint8], scales, flip, device, combine)[0]
