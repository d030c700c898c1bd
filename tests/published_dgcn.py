"""A plain transcription of the published DGCN training step, to test ours against.

Written from reading hustvl/DGCN (``train.py``: ``cacul_knn_matrix_``,
``generate_supervision``, ``softmax``, ``cal_seeding_loss``, ``constrain_loss``,
``crf_operation``; ``model.py``: the features ``layer1`` and ``layer3``) and
speedinghzl/DSRG (``pylayers.py``: ``SoftmaxLayer``, ``UpdateSeedLayer3.refinement``,
``generate_seed_step``), in numpy, PyMaxflow and
plain loops, the way the published code does it: a dense 0/1 kNN matrix, one PyMaxflow
graph per (image, class) built node by node, multi-hot supervision (B, C, h, w), losses
on probabilities with 1e-7 added. Nothing here imports from ``stages``.

Conventions kept from the published code: the image-level label vector includes
background (``cues_reader.py`` sets class 0), so background is cut like any class; the
class-c side of a cut is the sink (``add_tedge(node, 0, 10)`` for a seed of c, and
``get_grid_segments`` true = sink = c).
"""
from __future__ import annotations

import maxflow
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

UNLABELLED = 255
MIN_PROB = 1e-7  # train.py: softmax(pred, min_prob)
DSRG_MIN_PROB = 1e-4  # DSRG pylayers.py: min_prob


def node_features(layer1: torch.Tensor, layer3: torch.Tensor) -> torch.Tensor:
    """train.py: layer1 resized to layer3's size (bilinear, corners aligned), then concatenated."""
    small = F.interpolate(layer1, size=tuple(layer3.shape[-2:]), mode="bilinear", align_corners=True)
    return torch.cat((small, layer3), 1)


def knn_matrix(features: np.ndarray, k: int = 9) -> np.ndarray:
    """cacul_knn_matrix_ (its K = 10 counts the node itself): (B, N, N) 0/1, row i = i's neighbours."""
    b, ch, h, w = features.shape
    n = h * w
    out = np.zeros((b, n, n))
    for i in range(b):
        f = features[i].reshape(ch, n).T.astype(np.float64)
        sq = (f ** 2).sum(1)[:, None]
        dist = np.abs(sq + sq.T - 2.0 * f @ f.T)
        kth = np.sort(dist, axis=1)[:, k][:, None]  # the (k+1)-th smallest, self included
        out[i] = (dist <= kth).astype(float) - np.eye(n)
    return out


def softmax_with_floor(logits: torch.Tensor) -> torch.Tensor:
    """train.py ``softmax``: softmax, plus 1e-7 everywhere, renormalised."""
    p = torch.softmax(logits.double(), 1) + MIN_PROB
    return p / p.sum(1, keepdim=True)


def dsrg_softmax(logits: torch.Tensor) -> torch.Tensor:
    """DSRG ``SoftmaxLayer``: softmax, plus 1e-4 (its min_prob) everywhere, renormalised."""
    p = torch.softmax(logits.double(), 1) + DSRG_MIN_PROB
    return p / p.sum(1, keepdim=True)


def dsrg_refinement_unary(probs: np.ndarray) -> np.ndarray:
    """DSRG ``UpdateSeedLayer3.refinement`` up to the solver: probabilities floored at 1e-4 (not
    renormalised), handed to its ``CRF`` wrapper, which sets ``set_unary_energy(-unary)``:
    the unary energy is -p itself, not -log p. (C, h, w) -> (C, h, w)."""
    p = probs.copy()
    p[p < DSRG_MIN_PROB] = DSRG_MIN_PROB
    return -p


def generate_supervision(labels: np.ndarray, cues: np.ndarray, pred: np.ndarray,
                         knn: np.ndarray, theta: float = 0.7, c1: float = 10.0) -> np.ndarray:
    """generate_supervision: ``labels`` (B, C) 0/1 with background set, ``cues`` (B, C, h, w)
    one-hot seeds, ``pred`` (B, C, h, w) probabilities, ``knn`` (B, N, N). Returns (B, C, h, w)."""
    b, n_cls, h, w = pred.shape
    n = h * w
    supervision = cues.copy()
    for i in range(b):
        markers = np.full((h, w), n_cls)  # n_cls = unlabelled
        cls_idx, ys, xs = np.where(cues[i] == 1)
        markers[ys, xs] = cls_idx
        markers = markers.reshape(n)
        for c in np.flatnonzero(labels[i]):
            p = pred[i, c].reshape(n)
            g = maxflow.Graph[float]()
            nodes = g.add_nodes(n)
            for node in range(n):
                if markers[node] == c:
                    g.add_tedge(nodes[node], 0, c1)
                elif markers[node] == n_cls:
                    g.add_tedge(nodes[node], -np.log10(p[node]), -np.log10(1 - p[node]))
                else:
                    g.add_tedge(nodes[node], c1, 0)
                for nb in np.where(knn[i][node] == 1)[0]:
                    g.add_edge(nodes[node], nodes[nb], 1, 1)
            g.maxflow()
            side = g.get_grid_segments(np.arange(n)).astype(float).reshape(h, w)
            supervision[i, c] = np.where(pred[i, c] > theta, side, supervision[i, c])
    return supervision


def seeding_loss(probs: torch.Tensor, supervision: torch.Tensor) -> torch.Tensor:
    """cal_seeding_loss: per-image sums over per-image counts (floored at 1e-4), batch means."""
    lb, lf = supervision[:, 0].double(), supervision[:, 1:].double()
    count_bg = lb.sum((1, 2))
    count_fg = lf.sum((1, 2, 3))
    sum_bg = (lb * torch.log(probs[:, 0])).sum((1, 2))
    sum_fg = (lf * torch.log(probs[:, 1:])).sum((1, 2, 3))
    loss_bg = -(sum_bg / torch.clamp(count_bg, min=1e-4)).mean()
    loss_fg = -(sum_fg / torch.clamp(count_fg, min=1e-4)).mean()
    return loss_bg + loss_fg


def constrain_loss(probs: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """constrain_loss: mean over pixels of sum_c Q log(clip(Q / H, 0.05, 20)); the clip is
    ``clip()``'s masks, so no gradient flows where the ratio is outside."""
    ratio = q / probs
    low, high = ratio < 0.05, ratio > 20
    clipped = ratio * (~low).double() * (~high).double() + low.double() * 0.05 + high.double() * 20
    return torch.mean(torch.sum(q * torch.log(clipped), 1))


def crf_output_floor(q: np.ndarray) -> np.ndarray:
    """crf_operation's post-processing: Q floored at 1e-4 and renormalised (DSRG's
    ``refinement`` post-processes its Q the same way)."""
    q = np.maximum(q, 1e-4)
    return q / q.sum(1, keepdims=True)


def dsrg_generate_seed_step(labels: np.ndarray, seed_c: np.ndarray, probs_refinement: np.ndarray,
                            th1: float = 0.99, th2: float = 0.85) -> np.ndarray:
    """DSRG generate_seed_step for one image: ``labels`` (C,) 0/1 with background set,
    ``seed_c`` (C, h, w) one-hot cues, refined probabilities (C, h, w). Pixel loops as there;
    scipy's 8-connected labelling stands in for its CC_labeling_8."""
    seed_c = seed_c.copy()
    cls_index = np.where(labels == 1)[0]
    selected = probs_refinement[cls_index]
    probs_c = np.argmax(selected, axis=0)
    probs_p = np.max(selected, axis=0)
    h, w = probs_p.shape
    label_map = np.zeros((h, w))
    idx = np.where(seed_c > 0)
    label_map[idx[1], idx[2]] = idx[0] + 1
    for y in range(h):
        for x in range(w):
            c = cls_index[probs_c[y, x]]
            value = probs_p[y, x]
            if value > th2:
                if c != 0:
                    label_map[y, x] = c + 1
                elif value > th1:
                    label_map[y, x] = c + 1
    for c in cls_index:
        mat = (label_map == c + 1).astype(int)
        comp, _ = ndimage.label(mat, structure=np.ones((3, 3)))
        comp = comp.astype(int)
        high = set()
        for y in range(h):
            for x in range(w):
                if mat[y, x] == 1 and seed_c[c, y, x] == 1:
                    high.add(comp[y, x])
                elif mat[y, x] == 1 and seed_c[:, y, x].sum() == 1:
                    comp[y, x] = -1
        for y in range(h):
            for x in range(w):
                if comp[y, x] in high:
                    seed_c[c, y, x] = 1
    return seed_c


def one_hot_cues(seeds: np.ndarray, n_cls: int) -> np.ndarray:
    """(B, h, w) seed labels (255 = none) -> (B, C, h, w) 0/1 cues, as cues_reader builds them."""
    b, h, w = seeds.shape
    cues = np.zeros((b, n_cls, h, w))
    for i in range(b):
        ys, xs = np.where(seeds[i] != UNLABELLED)
        cues[i, seeds[i, ys, xs], ys, xs] = 1
    return cues
