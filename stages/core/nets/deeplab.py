"""DeepLab-v2 segmentation network with the node features the graph cut needs.

One backbone pass gives both the score maps (ASPP on the stride-8 features) and
the graph-cut node features (chosen stages resized to the score-map size), so the
supervision never costs a second forward pass.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import DgcnError
from .backbones import Backbone, build_backbone, resize_to
from .classifier import param_groups

ASPP_RATES = (6, 12, 18, 24)


class ASPP(nn.Module):
    """DeepLab-v2 ASPP: parallel dilated 3x3 convs straight to class scores, summed."""

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


class DeepLabV2(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        graph_layers: Sequence[str] | None = None,
        rates: Sequence[int] = ASPP_RATES,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"segmentation needs background plus at least one class, got {num_classes}")
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
        self.feature_channels = sum(backbone.channels[n] for n in layers)
        self.head = ASPP(backbone.out_channels, num_classes, rates)

    @property
    def init_args(self) -> dict:
        """What ``build_segmenter`` needs to rebuild this network (for checkpoints)."""
        return {"backbone": self.backbone.name, "num_classes": self.num_classes,
                "graph_layers": list(self.graph_layers)}

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Logits (B, K+1, h, w) at stride 8; with ``return_features`` also the
        (B, feature_channels, h, w) graph-cut node features. Features are not
        detached: callers that only build graphs from them should do so."""
        feats = self.backbone(x)
        logits = self.head(feats[self.backbone.out_layer])
        if not return_features:
            return logits
        size = tuple(logits.shape[-2:])
        nodes = torch.cat([resize_to(feats[n], size) for n in self.graph_layers], dim=1)
        return logits, nodes

    def param_groups(self, lr: float, head_mult: float = 10.0, weight_decay: float = 5e-4) -> list[dict]:
        return param_groups(self.backbone, self.head, lr, head_mult, weight_decay)


def build_segmenter(
    backbone_name: str,
    num_classes: int,
    weights: str | Path = "none",
    graph_layers: Sequence[str] | None = None,
) -> DeepLabV2:
    """DeepLab-v2 over ``num_classes`` classes, background included."""
    return DeepLabV2(build_backbone(backbone_name, weights), num_classes, graph_layers)
