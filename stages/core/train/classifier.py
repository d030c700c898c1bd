"""What training the CAM classifier adds to the loop: the network (a backbone, global
average pooling and one bias-free class layer), the multi-label loss on image-level
labels, and validation mAP on another split's image-level labels (never its masks)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..datasets import DataConfig
from ..nets import BACKBONES, Classifier, build_classifier
from ..nets.inputs import to_tensor
from ..options import opt
from .fit import Task


@dataclass(frozen=True)
class ClassifierConfig:
    """The CAM classifier. ``freeze_backbone``: train only the class layer on the pretrained
    backbone's fixed features (its BatchNorm statistics included)."""

    backbone: str = opt("tiny", "Backbone: {choices}.", choices=lambda: BACKBONES.names())
    weights: str = opt("none", "Backbone initialisation: imagenet, none, or a weights file.")
    freeze_backbone: bool = opt(False, "Train only the class layer on the pretrained backbone's fixed features "
                                       "(BatchNorm statistics included).", negative="--train-backbone")

    def build(self, num_classes: int) -> Classifier:
        # num_classes counts the background, which the classifier has no output for
        return build_classifier(self.backbone, num_classes - 1, self.weights, self.freeze_backbone)


def classification_loss(model: Classifier, batch: dict, device: torch.device, iteration: int = 0):
    """Multi-label soft margin on the image-level labels (in float32 under autocast)."""
    x, y = batch["image"].to(device, non_blocking=True), batch["labels"].to(device)
    return F.multilabel_soft_margin_loss(model(x).float(), y), {}


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP of one class: the mean precision at each positive, ranked by score."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


@torch.no_grad()
def validate(model: Classifier, data: DataConfig, device: torch.device, shard: tuple[int, int] = (0, 1)) -> float:
    """Mean AP over the classes present in the split, from whole-image logits at scale 1
    (a training monitor, not a CAM-quality measure). Reads image-level labels only."""
    weak = data.build().weak()
    rank, world = shard
    model.eval()
    rows = []
    for image_id in weak.ids[rank::world]:
        scores = model(to_tensor(weak.load_image(image_id))[None].to(device)).float()[0].cpu().numpy()
        rows.append((scores, weak.label_vector(image_id)))
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    scores = np.stack([s for s, _ in rows])
    labels = np.stack([y for _, y in rows]) > 0.5
    aps = [average_precision(scores[:, c], labels[:, c]) for c in range(labels.shape[1]) if labels[:, c].any()]
    return float(np.mean(aps)) if aps else float("nan")


def classifier_task(model: ClassifierConfig) -> Task:
    return Task(kind="classifier", build=model.build, loss=classification_loss, validate=validate, val_name="val_map")
