"""Label propagation over the feature-space kNN graph (Zhou et al. 2004, "local and global consistency").

The DGCN paper names it as future work: like the graph cut it moves labels
along feature-space neighbours (so separate instances of a class can share
labels), but it labels all classes at once, background included, instead of
one binary cut per foreground class.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..maps import IGNORE
from .base import EXPANDERS, Expander, ExpanderConfig, _require
from .knn import feature_nodes, knn

_WEIGHTS = ("binary", "gaussian")


@dataclass
class LabelPropConfig(ExpanderConfig):
    """Options of ``labelprop``.

    k: neighbours per node in feature space (same graph as ``graphcut``).
    alpha: Zhou et al.'s trade-off; 0.99 as in their experiments.
    iters: iterations of F <- alpha S F + (1 - alpha) Y. A label travels one kNN
        hop per iteration, so this also bounds how far it can spread.
    weights: "binary" (every kNN edge weighs 1, like the graph cut's C0) or
        "gaussian" (exp(-d^2 / mean d^2 of the image's kNN edges)).
    theta: a node takes class l only if also H_l > theta (background included);
        0 switches the gate off.
    normalize_features: L2-normalise each node's feature vector before the kNN.
    """

    k: int = 9
    alpha: float = 0.99
    iters: int = 50
    weights: str = "binary"
    theta: float = 0.7
    normalize_features: bool = True

    def validate(self) -> None:
        _require(int(self.k) == self.k and self.k >= 1, "labelprop", f"k must be an integer >= 1, got {self.k}")
        _require(0 < self.alpha < 1, "labelprop", f"alpha must be in (0, 1), got {self.alpha}")
        _require(int(self.iters) == self.iters and self.iters >= 1, "labelprop",
                 f"iters must be an integer >= 1, got {self.iters}")
        _require(self.weights in _WEIGHTS, "labelprop",
                 f"weights must be one of {', '.join(_WEIGHTS)}, got {self.weights!r}")
        _require(0 <= self.theta < 1, "labelprop", f"theta must be in [0, 1), got {self.theta}")


def knn_operators(
    dist2: torch.Tensor, idx: torch.Tensor, weights: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pieces of S = D^-1/2 W D^-1/2 for B images as block-diagonal (B*N, B*N) operators.

    W = A + A^T with A the directed kNN weights (a mutual pair weighs twice, as in the
    graph cut). Returns (A, A^T, D^-1/2): A and A^T as CSR, so S F is
    D^-1/2 (A + A^T) D^-1/2 F without ever coalescing W: A's rows are already in
    order and A^T needs only one stable sort of the neighbour indices.
    """
    b, n, k = idx.shape
    total = b * n
    if weights == "gaussian":
        scale = dist2.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        w = torch.exp(-dist2 / scale)
    else:
        w = torch.ones_like(dist2)
    dev = idx.device
    offset = (torch.arange(b, device=dev) * n)[:, None, None]
    cols = (idx + offset).reshape(-1)
    w = w.reshape(-1)
    rows = torch.arange(total, device=dev).repeat_interleave(k)
    deg = torch.zeros(total, device=dev, dtype=w.dtype)
    deg.index_add_(0, rows, w).index_add_(0, cols, w)
    dinv = deg.clamp_min(1e-12).rsqrt()
    with warnings.catch_warnings():
        # CSR is flagged "beta" by torch, but its matmul is what makes the iterations cheap.
        warnings.simplefilter("ignore", UserWarning)
        crow = torch.arange(0, total * k + 1, k, device=dev)
        a = torch.sparse_csr_tensor(crow, cols, w, (total, total), check_invariants=False)
        order = torch.sort(cols, stable=True).indices
        counts = torch.bincount(cols, minlength=total)
        crow_t = torch.zeros(total + 1, dtype=torch.long, device=dev)
        torch.cumsum(counts, 0, out=crow_t[1:])
        a_t = torch.sparse_csr_tensor(crow_t, rows[order], w[order], (total, total),
                                      check_invariants=False)
    return a, a_t, dinv


@EXPANDERS.register("labelprop")
class LabelPropExpander(Expander):
    """Zhou et al. label propagation from the seeds over the feature-space kNN graph.

    Y is the one-hot of the seeds over the image's present classes (background
    included); F starts at Y and is iterated ``iters`` times on the device of the
    features, all images as one block-diagonal sparse matrix. An unlabelled node
    that received any mass takes the argmax of F over the present classes,
    gated by H > theta for that class (the graph cut's rule, applied to every
    class); seeds are copied unchanged; the rest stays 255.
    Choices of our own: fixed iteration count instead of the closed form
    (I - alpha S)^-1 Y (a dense N x N inverse per image), binary weights by
    default, the same kNN (self excluded, optional L2 normalisation) as ``graphcut``.
    """

    name = "labelprop"
    config_class = LabelPropConfig
    needs_features = True
    config: LabelPropConfig

    def _expand(self, features, probs, seeds, present):
        cfg = self.config
        dev = features.device
        b, k1, h, w = probs.shape
        n = h * w
        dist2, idx = knn(feature_nodes(features, cfg.normalize_features), cfg.k)
        a, a_t, dinv = knn_operators(dist2, idx, cfg.weights)
        dinv = dinv[:, None]

        present = present.to(dev)
        # Propagate only the present classes: L = most classes in one image, not K+1.
        n_cls = present.sum(1)
        lmax = int(n_cls.max())
        order = torch.argsort((~present).to(torch.int8), dim=1, stable=True)[:, :lmax]
        valid = torch.arange(lmax, device=dev)[None, :] < n_cls[:, None]  # (B, L)
        cls_map = torch.where(valid, order, torch.full_like(order, -1))

        flat_seeds = seeds.to(dev).reshape(b, n).long()
        y = (flat_seeds[:, :, None] == cls_map[:, None, :]).float()  # (B, N, L); -1 never matches
        y = y.reshape(b * n, lmax)
        f = y.clone()
        for _ in range(int(cfg.iters)):
            g = dinv * f
            f = (cfg.alpha * dinv) * (a @ g + a_t @ g) + (1.0 - cfg.alpha) * y
        f = f.reshape(b, n, lmax)

        reached = f.sum(-1) > 0
        f = f.masked_fill(~valid[:, None, :], float("-inf"))
        best = cls_map.gather(1, f.argmax(-1))  # (B, N) class ids
        p = probs.to(dev).reshape(b, k1, n)
        h_best = p.gather(1, best.clamp_min(0)[:, None, :])[:, 0]
        grow = (flat_seeds == IGNORE) & reached & (h_best > cfg.theta)
        out = torch.where(grow, best, flat_seeds)
        return out.reshape(b, h, w)
