"""``retrain``: a segmentation network trained on proxy masks as if they were ground truth.

The masks come from ``--labels`` (any labels artifact) or are made here from a
trained checkpoint: multi-scale + flip probabilities, restricted to the
image's labelled classes (the training split's image-level labels are known),
refined by the dense CRF, argmax. They are written to ``pseudo_labels.h5`` in
the run folder (resumable), then a fresh network trains with cross-entropy
(255 ignored) under the same schedule, run folder and resume machinery as
``train``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .core import checks
from .core.config import DataConfig, to_jsonable
from .core.cues.crf import CrfConfig, dense_crf
from .core.datasets import WeakDataset
from .core.device import resolve_device
from .core.io.artifacts import ArtifactMeta, ArtifactWriter, fill
from .core.maps import IGNORE, resize_labels
from .core.predict.segmenter import (
    TEST_SCALES,
    load_segmenter_checkpoint,
    predict_probs,
)
from .core.stage import Progress, StageResult, wrote
from .core.train.fit import OptimConfig, RunConfig, fit
from .core.train.segmenter import LazyLabelMaps, ModelConfig, segmenter_task


@dataclass(frozen=True)
class RetrainConfig:
    run: RunConfig
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: Optional[Path] = None  # label the split with this model ...
    labels: Optional[Path] = None  # ... or train on these proxy labels
    scales: tuple[float, ...] = TEST_SCALES
    flip: bool = True
    crf: bool = True

    def __post_init__(self) -> None:
        checks.scales("--scales", self.scales)


def pseudo_labels_path(cfg: RetrainConfig) -> Path:
    return Path(cfg.run.out) / "pseudo_labels.h5"


def make_pseudo_labels(cfg: RetrainConfig, weak: WeakDataset, progress=None) -> Path:
    device = resolve_device(cfg.run.device)
    seg = load_segmenter_checkpoint(cfg.checkpoint, device)
    seg.check_classes(weak.class_names, f"{weak.name}/{weak.split}")

    def compute(image_id: str) -> dict[str, np.ndarray]:
        image = weak.load_image(image_id)
        probs = predict_probs(seg.model, image, cfg.scales, cfg.flip, device)
        absent = np.ones(len(weak.class_names), dtype=bool)
        absent[[0, *weak.labels(image_id)]] = False
        probs[absent] = 0.0
        probs /= probs.sum(axis=0, keepdims=True).clip(min=1e-8)
        if cfg.crf:
            probs = dense_crf(image, probs, CrfConfig())
        return {"label": probs.argmax(axis=0).astype(np.uint8)}

    meta = ArtifactMeta(
        kind="labels", dataset=weak.name, split=weak.split, class_names=weak.class_names,
        config=to_jsonable(cfg),
        extra={"source": f"predicted by {cfg.checkpoint}", "scales": list(cfg.scales), "flip": cfg.flip, "crf": cfg.crf,
               "restricted_to_image_labels": True, "model": seg.provenance},
    )
    with ArtifactWriter(pseudo_labels_path(cfg), meta, overwrite=cfg.run.overwrite and not cfg.run.resume, resume=cfg.run.resume, expected=len(weak.ids)) as w:
        return fill(w, weak.ids, compute, progress)


def _ce_loss(model, batch: dict, device: torch.device, iteration: int = 0):
    logits = model(batch["image"].to(device, non_blocking=True)).float()
    target = resize_labels(batch["map0"].to(device), tuple(logits.shape[-2:]))
    if (target != IGNORE).any():
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE)
    else:  # a crop with no labelled pixel: a zero that still has a graph
        loss = logits.sum() * 0.0
    return loss, {}


def run(cfg: RetrainConfig, progress: Optional[Progress] = None) -> StageResult:
    from .core.errors import DgcnError

    if (cfg.checkpoint is None) == (cfg.labels is None):
        raise DgcnError("retrain needs exactly one of --checkpoint (label the split with it) or --labels (a labels.h5)")
    weak = cfg.data.build().weak()
    labels = cfg.labels if cfg.labels is not None else make_pseudo_labels(cfg, weak, progress)
    maps = LazyLabelMaps(labels, ("labels", "predictions", "seeds"), weak.class_names, weak.ids)
    final = fit(
        run=cfg.run, optim=cfg.optim, weak=weak, task=segmenter_task(cfg.model, _ce_loss, maps),
        # the labels' content fingerprint: training on regenerated labels is another run
        stage_config={"stage": "retrain", **cfg.__dict__, "labels_fingerprint": maps.fingerprint, "teacher": maps.made_by},
        progress=progress,
    )
    return wrote(final) if cfg.labels is not None else wrote(final, labels)
