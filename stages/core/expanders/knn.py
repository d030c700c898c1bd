"""K nearest neighbours of every score-map position in feature space, on the features' device.

The published code builds a dense N x N distance matrix on the host after copying
whole feature maps there; here the distances are computed where the features
already live and only the (B, N, K) neighbour indices (and, when asked, their
squared distances) leave the function. Queries are processed in chunks so the
temporary distance block stays at ``chunk x N`` per image instead of ``N x N``
(81x81 nodes at batch 16 would otherwise be 2.7 GB).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Elements of one temporary (B, chunk, N) distance block. The CPU budget is small
# enough to stay in cache-friendly sizes; the GPU budget keeps one block around 1 GB.
_CHUNK_ELEMS_CPU = 1 << 22
_CHUNK_ELEMS_GPU = 1 << 28


def feature_nodes(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """(B, C, h, w) feature maps -> (B, N, C) float32 node vectors, N = h*w in row-major order.

    ``normalize`` L2-normalises each node's vector, so neighbours are chosen by
    direction (cosine) and feature maps of different magnitudes weigh alike.
    """
    b, c, h, w = features.shape
    x = features.detach().reshape(b, c, h * w).transpose(1, 2).float()
    if normalize:
        x = F.normalize(x, p=2.0, dim=-1, eps=1e-12)
    # Left as a transposed view: the GEMMs in ``knn`` read either layout, and copying
    # the maps into node-major order would cost as much as a third of the kNN on a CPU.
    return x


def knn(
    x: torch.Tensor, k: int, chunk_elems: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbours by L2 distance of every node, itself excluded.

    ``x``: (B, N, C). Returns ``(dist2, idx)``, both (B, N, k') with k' = min(k, N-1):
    squared distances in ascending order (float32) and neighbour indices (int64).
    The node itself is excluded by position, not by distance, so a duplicate
    feature vector elsewhere is still a valid neighbour while the node never is.
    """
    if x.dim() != 3:
        raise ValueError(f"knn expects (B, N, C) node features, got {tuple(x.shape)}")
    b, n, _ = x.shape
    k = min(int(k), n - 1)
    if k < 1:
        empty = x.new_zeros((b, n, 0))
        return empty, empty.long()
    if chunk_elems is None:
        chunk_elems = _CHUNK_ELEMS_GPU if x.is_cuda else _CHUNK_ELEMS_CPU
    step = max(1, min(n, chunk_elems // max(1, b * n)))
    sq = (x * x).sum(-1)  # (B, N)
    xt = x.transpose(1, 2)
    # One block reused for every full chunk: fresh multi-MB allocations page-fault on the CPU.
    block = x.new_empty((b, step, n))
    dists, idxs = [], []
    for q0 in range(0, n, step):
        q1 = min(n, q0 + step)
        m = q1 - q0
        # |x|^2 - 2 q.x as one fused batched GEMM; |q|^2 is constant along a row, so it
        # does not change the ranking and is added to the k winners only.
        d = torch.baddbmm(sq[:, None, :], x[:, q0:q1], xt, beta=1.0, alpha=-2.0,
                          out=block if m == step else None)
        rows = torch.arange(m, device=x.device)
        d[:, rows, rows + q0] = float("inf")
        v, i = torch.topk(d, k, dim=-1, largest=False, sorted=True)
        dists.append((v + sq[:, q0:q1, None]).clamp_min_(0.0))
        idxs.append(i)
    return torch.cat(dists, 1), torch.cat(idxs, 1)


def knn_indices(
    features: torch.Tensor, k: int, normalize: bool = True, chunk_elems: int | None = None
) -> torch.Tensor:
    """(B, C, h, w) feature maps -> (B, h*w, k) int64 neighbour indices on the same device."""
    return knn(feature_nodes(features, normalize), k, chunk_elems)[1]
