"""hustvl/DGCN's optimiser, reproduced without listing a parameter twice.

The published ``train.py`` gives SGD the backbone's parameters through
``get_1x_lr_params_NOscale``: for each of ``conv1, bn1, layer1 ... layer4`` it walks
``module.modules()`` (the module itself and every submodule) and yields, for each, all of its
trainable ``parameters()``. A parameter is therefore listed once per module that encloses it,
from the top-level one down to the conv holding it: ResNet's stem conv once, a bottleneck's
convs three times (layer, block, conv), a downsample conv four times (layer, block,
downsample, conv). ResNet-101 with BatchNorm frozen gives 314 entries for 104 parameters.

torch's SGD steps a parameter listed n times n times per ``step()``: every listing reads the
same gradient, adds weight decay of the value the previous listing left, updates the momentum
buffer and moves the parameter. The buffer lives in ``state[p]``, one per parameter, so from
the second step on the n listings share it; on the first step there is none yet, so each
listing starts its own from its own gradient and the last one is kept (torch 2.x; torch of
2020 shared from the first listing). Torch warns that a parameter listed twice will become an
error, so ``RepeatedSGD`` lists each parameter once, with ``repeats`` per group, and replays
exactly those n updates (the same arithmetic, in the same order, on every device: torch's
multi-tensor CUDA path would compute them differently for a repeated parameter).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

import torch
from torch import nn


def enclosing_counts(trunk: nn.Module) -> dict[int, int]:
    """``id(parameter) -> n``: how many times the published walk lists each trainable parameter
    of ``trunk``. The walk starts at the trunk's top-level modules: for a torchvision ResNet
    those holding parameters are exactly the published list (conv1, bn1, layer1-4; relu,
    maxpool, avgpool and the dropped fc hold none); other backbones get the same walk over
    their own top-level modules."""
    counts: dict[int, int] = {}
    for top in trunk.children():
        for module in top.modules():
            for p in module.parameters():
                if p.requires_grad:
                    counts[id(p)] = counts.get(id(p), 0) + 1
    return counts


def repeated_groups(groups: Iterable[Mapping[str, Any]], counts: Mapping[int, int]) -> list[dict]:
    """``groups`` split by how many times their parameters are listed (``counts``; 1 where a
    parameter is not counted: the head, listed once by the published ``get_10x_lr_params``),
    each with its ``repeats``; every other key of a group is kept."""
    out = []
    for group in groups:
        by_n: dict[int, list] = {}
        for p in group["params"]:
            by_n.setdefault(counts.get(id(p), 1), []).append(p)
        out += [{**group, "params": params, "repeats": n} for n, params in sorted(by_n.items())]
    return out


class RepeatedSGD(torch.optim.SGD):
    """SGD (momentum, weight decay; no dampening or Nesterov) that steps each parameter of a
    group ``repeats`` times per step, as torch's SGD steps a parameter listed that many times.
    Its state dict is SGD's, with ``repeats`` kept in each group."""

    def __init__(self, params: Iterable[dict], lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=False)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            before = [self.state[p].get("momentum_buffer") for p in params]
            bufs = before
            for _ in range(int(group.get("repeats", 1))):
                # a fresh list per listing: where there is no buffer yet each listing makes its
                # own, where there is one every listing updates that same tensor
                bufs = list(before)
                _sgd_pass(params, bufs, group["lr"], group["momentum"], group["weight_decay"])
            if group["momentum"] != 0:
                for p, buf in zip(params, bufs):
                    self.state[p]["momentum_buffer"] = buf  # the last listing's, as torch keeps it
        return loss


def _sgd_pass(params: list[torch.Tensor], bufs: list[Optional[torch.Tensor]], lr: float, momentum: float,
              weight_decay: float) -> None:
    """One listing of each parameter: torch's single-tensor SGD update, written out."""
    for i, p in enumerate(params):
        d = p.grad.add(p, alpha=weight_decay) if weight_decay != 0 else p.grad
        if momentum != 0:
            if bufs[i] is None:
                bufs[i] = d.detach().clone()
            else:
                bufs[i].mul_(momentum).add_(d)
            d = bufs[i]
        p.add_(d, alpha=-lr)
