"""DeepLab-v2 segmentation network with the node features the graph cut needs.

One backbone pass gives both the score maps (the head on the stride-8 features) and
the graph-cut node features (chosen stages resized to the score-map size), so the
supervision never costs a second forward pass.

Heads (``HEADS``): ``largefov``, one 3x3 conv at dilation 12 straight to class scores,
is what the published DGCN code trains (hustvl/DGCN ``model.py``: its ``layer5`` is a
``Classifier_Module`` with the single rate 12); ``aspp`` is DeepLab-v2's four rates
6/12/18/24 summed, which the paper's text names.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DgcnError
from .backbones import Backbone, build_backbone
from .classifier import param_groups

ASPP_RATES = (6, 12, 18, 24)
LARGEFOV_RATES = (12,)


class ASPP(nn.Module):
    """Parallel dilated 3x3 convs straight to class scores, summed (one rate: LargeFOV)."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = ASPP_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for conv in self.branches[1:]:
            out = out + conv(x)
        return out


#: head name -> constructor (in_channels, num_classes)
HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "largefov": lambda cin, k: ASPP(cin, k, LARGEFOV_RATES),
    "aspp": lambda cin, k: ASPP(cin, k, ASPP_RATES),
}
DEFAULT_HEAD = "largefov"


def freeze_batchnorm_affine(module: nn.Module) -> int:
    """Stop training BatchNorm scale and shift (the published code's ``requires_grad = False``);
    running statistics still update in train mode. Returns how many layers were frozen."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)
            n += 1
    return n


class DeepLabV2(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        graph_layers: Sequence[str] | None = None,
        head: str = DEFAULT_HEAD,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"segmentation needs background plus at least one class, got {num_classes}")
        if head not in HEADS:
            raise DgcnError(f"unknown head {head!r}; choose from: {', '.join(HEADS)}")
        layers = tuple(graph_layers) if graph_layers else backbone.graph_layers
        unknown = [n for n in layers if n not in backbone.channels]
        if unknown:
            raise DgcnError(
                f"graph layer(s) {', '.join(unknown)} not in backbone {backbone.name!r}; "
                f"choose from: {', '.join(backbone.channels)}"
            )
        self.backbone = backbone
        self.num_classes = num_classes
        self.graph_layers = layers
        self.head_name = head
        self.feature_channels = sum(backbone.channels[n] for n in layers)
        self.head = HEADS[head](backbone.out_channels, num_classes)

    @property
    def init_args(self) -> dict:
        """What ``build_segmenter`` needs to rebuild this network (for checkpoints)."""
        return {"backbone": self.backbone.name, "num_classes": self.num_classes,
                "graph_layers": list(self.graph_layers), "head": self.head_name}

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Logits (B, K+1, h, w) at stride 8; with ``return_features`` also the
        (B, feature_channels, h, w) graph-cut node features: raw (not normalised), each
        stage resized bilinearly with corners aligned, as the published code resizes
        layer1 to 41x41. Features are not detached: callers that only build graphs
        from them should do so."""
        feats = self.backbone(x)
        logits = self.head(feats[self.backbone.out_layer])
        if not return_features:
            return logits
        size = tuple(logits.shape[-2:])
        nodes = torch.cat([
            f if tuple(f.shape[-2:]) == size else F.interpolate(f, size=size, mode="bilinear", align_corners=True)
            for f in (feats[n] for n in self.graph_layers)
        ], dim=1)
        return logits, nodes

    def param_groups(self, lr: float, head_mult: float = 10.0, weight_decay: float = 5e-4) -> list[dict]:
        return param_groups(self.backbone, self.head, lr, head_mult, weight_decay)


def build_segmenter(
    backbone_name: str,
    num_classes: int,
    weights: str | Path = "none",
    graph_layers: Sequence[str] | None = None,
    head: str = DEFAULT_HEAD,
    freeze_bn: bool = False,
) -> DeepLabV2:
    """DeepLab-v2 over ``num_classes`` classes, background included.

    ``freeze_bn`` keeps the backbone's BatchNorm scale/shift at their initial
    (pretrained) values, as the published code does.
    """
    model = DeepLabV2(build_backbone(backbone_name, weights), num_classes, graph_layers, head)
    if freeze_bn:
        freeze_batchnorm_affine(model.backbone)
    return model
