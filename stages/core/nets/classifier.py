"""The CAM classifier: backbone, global average pooling, one bias-free linear layer.

With no bias and a 1x1 conv as the linear layer, pooling and the layer commute:
the image logits are exactly the spatial mean of the class activation maps, so
the CAMs are the classifier's own evidence, not a post-hoc approximation.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .backbones import Backbone, build_backbone


def param_groups(
    backbone: nn.Module,
    head: nn.Module,
    lr: float,
    head_mult: float = 10.0,
    weight_decay: float = 5e-4,
) -> list[dict]:
    """Optimizer groups: pretrained backbone at ``lr``, new head at ``lr * head_mult``.

    ``lr_mult`` is kept in each group so a custom schedule can set
    ``group["lr"] = base_lr * group["lr_mult"]`` without knowing which group is which.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    def trainable(m: nn.Module) -> list[nn.Parameter]:
        return [p for p in m.parameters() if p.requires_grad]

    return [
        {"name": "backbone", "params": trainable(backbone), "lr": lr, "lr_mult": 1.0,
         "weight_decay": weight_decay},
        {"name": "head", "params": trainable(head), "lr": lr * head_mult, "lr_mult": head_mult,
         "weight_decay": weight_decay},
    ]


class Classifier(nn.Module):
    """Multi-label classifier whose CAMs seed the segmentation (paper, step 1)."""

    def __init__(self, backbone: Backbone, num_classes: int, freeze_backbone: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a classifier needs at least one class, got {num_classes}")
        self.backbone = backbone
        # A frozen backbone trains only the 1x1 class layer on fixed ImageNet features, its
        # BatchNorm statistics included: a few hundred images can move the whole network
        # away from what ImageNet taught it faster than they teach it the classes.
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            backbone.requires_grad_(False)
        self.num_classes = num_classes
        self.head = nn.Conv2d(backbone.out_channels, num_classes, 1, bias=False)
        # Small weights: initial logits near 0, i.e. sigmoid near 0.5, a neutral start.
        nn.init.normal_(self.head.weight, std=0.01)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    @property
    def init_args(self) -> dict:
        """What ``build_classifier`` needs to rebuild this network (for checkpoints)."""
        return {"backbone": self.backbone.name, "num_classes": self.num_classes}

    def last_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[self.backbone.out_layer]

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) class activation maps at stride 8, before any ReLU or normalisation."""
        return self.head(self.last_features(x))

    def forward(self, x: torch.Tensor, return_cams: bool = False):
        """(B, K) logits; with ``return_cams`` also the CAMs, from one backbone pass."""
        feats = self.last_features(x)
        if return_cams:
            cams = self.head(feats)
            return cams.mean(dim=(2, 3)), cams
        return self.head(feats.mean(dim=(2, 3), keepdim=True)).flatten(1)

    def param_groups(self, lr: float, head_mult: float = 10.0, weight_decay: float = 5e-4) -> list[dict]:
        return param_groups(self.backbone, self.head, lr, head_mult, weight_decay)


def build_classifier(backbone_name: str, num_fg_classes: int, weights: str | Path = "none",
                     freeze_backbone: bool = False) -> Classifier:
    """Classifier over ``num_fg_classes`` foreground classes (no background logit)."""
    return Classifier(build_backbone(backbone_name, weights), num_fg_classes, freeze_backbone)
