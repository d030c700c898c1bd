"""Seed expanders: graph cut, DSRG, label propagation, identity; and the kNN they share."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial.distance import cdist

from stages.core.expanders import (
    EXPANDERS,
    ExpanderOptionError,
    GraphCutConfig,
    build_expander,
    to_label_map,
)
from stages.core.expanders.base import random_inputs
from stages.core.expanders.graphcut import graph_cut_one, solve_cut, thresholds, tlink_capacities
from stages.core.expanders.knn import feature_nodes, knn, knn_indices
from stages.core.registry import UnknownNameError

U = 255
# the graph cut as the paper's text reads (seeds kept, background stays its seeds, natural log);
# the published rule's defaults are checked against a transcription in test_published.py
PAPER_TEXT = {"override_seeds": False, "cut_background": False, "log_base": math.e}


def random_batch(b=3, h=9, w=10, k=5, c=8, seed=0, sharp=4.0, seed_frac=0.15):
    """Features, skewed probabilities (so something grows), seeds of present classes."""
    return random_inputs(b, h, w, k, c, seed=seed, sharp=sharp, seed_frac=seed_frac)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_all_expanders():
    assert EXPANDERS.names() == ["dsrg", "graphcut", "labelprop", "none"]


def test_build_uses_paper_defaults():
    exp = build_expander("graphcut")
    # the paper's K, C0, C1, theta; the published code's log10, raw features, background cut
    # and seed override
    assert exp.config == GraphCutConfig(k=9, c0=1.0, c1=10.0, log_base=10.0, theta=0.7,
                                        normalize_features=False, cut_background=True,
                                        override_seeds=True, eps=1e-7, workers=0)
    assert build_expander("dsrg").config.refined
    assert build_expander("dsrg").config.bg_thresh == 0.99
    assert build_expander("dsrg").config.fg_thresh == 0.85
    assert build_expander("labelprop", k=6).config.k == 6


def test_the_crf_each_expander_grows_on():
    from dataclasses import replace

    from stages.core.cues.crf import BOUNDARY_CRF

    # dsrg: DSRG's own CRF (the boundary loss's kernels, U = -p) unless told otherwise
    dsrg = build_expander("dsrg")
    assert dsrg.config.refine_unary == "prob" and dsrg.needs_refined_probs
    assert dsrg.refine_crf == replace(BOUNDARY_CRF, unary="prob")
    assert build_expander("dsrg", refine_unary="neglog").refine_crf == BOUNDARY_CRF
    off = build_expander("dsrg", refined=False)
    assert off.refine_crf is None and not off.needs_refined_probs
    # the others grow on H itself, whatever their options
    for name in ("graphcut", "labelprop", "none"):
        exp = build_expander(name)
        assert exp.refine_crf is None and not exp.needs_refined_probs, name
    with pytest.raises(ExpanderOptionError, match="refine_unary must be neglog or prob, got 'log'") as err:
        build_expander("dsrg", refine_unary="log")
    assert "\n" not in str(err.value)
    with pytest.raises(ExpanderOptionError, match="refine_unary must be text"):
        build_expander("dsrg", refine_unary=1)


def test_unknown_option_and_name_fail_clearly():
    with pytest.raises(ExpanderOptionError, match=r"'kk'.*valid options: k, c0"):
        build_expander("graphcut", kk=3)
    with pytest.raises(ExpanderOptionError, match="theta"):
        build_expander("graphcut", theta=1.5)
    with pytest.raises(ExpanderOptionError, match="no option"):
        build_expander("none", k=9)
    with pytest.raises(UnknownNameError, match="dsrg, graphcut, labelprop, none"):
        build_expander("grabcut")


@pytest.mark.parametrize("name", ["dsrg", "graphcut", "labelprop", "none"])
def test_every_expander_keeps_seeds_and_returns_long(name):
    feats, probs, seeds, present = random_batch(seed=1)
    with build_expander(name, **(PAPER_TEXT if name == "graphcut" else {})) as exp:
        out = exp(feats, probs, seeds.to(torch.uint8), present)
    if name == "graphcut":
        assert out.dtype == torch.bool and out.shape == probs.shape
        out = to_label_map(out, probs)
    assert out.dtype == torch.long and out.shape == seeds.shape
    labelled = seeds != U
    assert torch.equal(out[labelled], seeds[labelled])
    # Every new label is a class present in its image.
    for i in range(out.shape[0]):
        vals = out[i][out[i] != U].unique()
        assert present[i, vals].all()


def test_bad_inputs_are_rejected():
    feats, probs, seeds, present = random_batch()
    exp = build_expander("graphcut")
    with pytest.raises(ValueError, match="features"):
        exp(None, probs, seeds, present)
    with pytest.raises(ValueError, match="resize"):
        exp(feats[:, :, :4], probs, seeds, present)
    bad = seeds.clone()
    bad[0, 0, 0] = 7 + probs.shape[1]
    with pytest.raises(ValueError, match="outside"):
        exp(feats, probs, bad, present)


def test_none_returns_seeds():
    _, probs, seeds, present = random_batch()
    out = build_expander("none")(None, probs, seeds.int(), present)
    assert out.dtype == torch.long and torch.equal(out, seeds)


# ----------------------------------------------------------------------------- kNN


def test_knn_excludes_self_even_with_duplicate_features():
    x = torch.zeros(2, 16, 3)  # every node identical: all distances tie at 0
    d, idx = knn(x, 5)
    own = torch.arange(16)[None, :, None]
    assert not (idx == own).any()
    assert torch.equal(d, torch.zeros_like(d))
    # distinct neighbours per node
    assert all(len(set(r.tolist())) == 5 for r in idx.reshape(-1, 5))
    # also through the feature-map entry point, where normalising zero vectors must not NaN
    idx2 = knn_indices(torch.zeros(1, 4, 3, 3), 4, normalize=True)
    assert not (idx2 == torch.arange(9)[None, :, None]).any()


def test_knn_caps_k_at_n_minus_one():
    idx = knn_indices(torch.randn(1, 2, 2, 2), 9, normalize=False)
    assert idx.shape == (1, 4, 3)
    assert all(sorted(r.tolist()) == [j for j in range(4) if j != i] for i, r in enumerate(idx[0]))


@pytest.mark.parametrize("chunk_elems", [1, 97, 5000, None])
def test_chunked_knn_equals_bruteforce_cdist(chunk_elems):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 70, 6, generator=g, dtype=torch.float64)
    d, idx = knn(x, 7, chunk_elems=chunk_elems)
    for b in range(3):
        full = cdist(x[b].numpy(), x[b].numpy(), "sqeuclidean")
        np.fill_diagonal(full, np.inf)
        ref = np.argsort(full, axis=1)[:, :7]
        np.testing.assert_array_equal(idx[b].numpy(), ref)
        np.testing.assert_allclose(d[b].numpy(), np.take_along_axis(full, ref, 1), rtol=1e-9, atol=1e-9)


def test_knn_float32_features_match_bruteforce_distances():
    x = feature_nodes(torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(4)))
    d, idx = knn(x, 9)
    for b in range(2):
        full = cdist(x[b].double().numpy(), x[b].double().numpy(), "sqeuclidean")
        np.fill_diagonal(full, np.inf)
        np.testing.assert_allclose(d[b].numpy(), np.sort(full, 1)[:, :9], atol=1e-5)
        # whatever float32 rounding picks, the picked nodes are at the k smallest distances
        np.testing.assert_allclose(np.take_along_axis(full, idx[b].numpy(), 1),
                                   np.sort(full, 1)[:, :9], atol=1e-5)


# ----------------------------------------------------------------------------- graph cut

# A 3x3 image in the spirit of the paper's Figure 2. Node p = 3*row + col.
# One-dimensional features put the nodes into three tight groups, so with K=2 the kNN graph
# is three triangles of mutual neighbours (each pair: 2 edges of C0=1, i.e. 2 each way):
#   A = {0, 1, 3}: node 0 is a seed of class 1;  H_1(1)=0.9, H_1(3)=0.75
#   B = {5, 7, 8}: node 8 is a background seed; H_1(5)=0.75, H_1(7)=0.1
#   C = {2, 4, 6}: no seeds;                     H_1 = 0.65, 0.6, 0.4
FIG2_FEATURES = [0.0, 1.0, 10.0, 2.1, 11.0, 20.0, 12.5, 21.0, 22.2]
FIG2_H1 = [0.5, 0.9, 0.65, 0.75, 0.6, 0.75, 0.4, 0.1, 0.5]
FIG2_SEEDS = [1, U, U, U, U, U, U, U, 0]
FIG2_KNN = {0: {1, 3}, 1: {0, 3}, 3: {0, 1}, 2: {4, 6}, 4: {2, 6}, 6: {2, 4},
            5: {7, 8}, 7: {5, 8}, 8: {5, 7}}


def fig2_inputs():
    feats = torch.tensor(FIG2_FEATURES, dtype=torch.float32).reshape(1, 1, 3, 3)
    h1 = torch.tensor(FIG2_H1).reshape(1, 3, 3)
    probs = torch.stack([1 - h1, h1], 1)
    seeds = torch.tensor(FIG2_SEEDS).reshape(1, 3, 3)
    present = torch.tensor([[True, True]])
    return feats, probs, seeds, present


def test_fig2_knn_graph_is_the_intended_one():
    feats, *_ = fig2_inputs()
    idx = knn_indices(feats, 2, normalize=False)[0]
    assert {i: set(r.tolist()) for i, r in enumerate(idx)} == FIG2_KNN


def test_fig2_tlinks_follow_boykov_jolly():
    # the published orientation: the sink is the class side
    src, sink = tlink_capacities(np.array(FIG2_H1), np.array(FIG2_SEEDS), 1, c1=10.0, log_base=math.e)
    assert (src[0], sink[0]) == (0.0, 10.0)      # class-1 seed: tied to the sink
    assert (src[8], sink[8]) == (10.0, 0.0)      # background seed: tied to the source
    # unlabelled: the source link is the price of the class side, -log(H)
    assert src[1] == pytest.approx(-math.log(0.9)) and sink[1] == pytest.approx(-math.log(0.1))
    src10, sink10 = tlink_capacities(np.array([0.9]), np.array([U]), 1)  # default: log10
    assert sink10[0] == pytest.approx(1.0) and src10[0] == pytest.approx(-math.log10(0.9))


def test_fig2_cut_by_hand():
    feats, probs, seeds, present = fig2_inputs()
    cfg = GraphCutConfig(k=2, log_base=math.e)
    idx = knn_indices(feats, 2, normalize=False)[0].numpy()
    side, flow = graph_cut_one(idx, np.array(FIG2_H1), np.array(FIG2_SEEDS), 1, cfg)
    # By hand, with ln:
    #  A: all foreground; pays the sink links of 1 and 3: -ln .9 - ln .75.
    #  B: node 5 alone on the fg side would pay -ln .75 = 0.29 plus 2+2 of n-links; on the bg
    #     side it pays -ln .25 = 1.39. So all background; pays source links of 5 and 7.
    #  C: all fg costs -ln(.65 .6 .4) = 1.86, all bg -ln(.35 .4 .6) = 2.48, any split >= 4:
    #     all foreground, node 6 (H=0.4) pulled over by its neighbours.
    assert side.tolist() == [True, True, True, True, True, False, True, False, False]
    expected = -math.log(0.9 * 0.75) - math.log(0.25 * 0.9) - math.log(0.65 * 0.6 * 0.4)
    assert flow == pytest.approx(expected, rel=1e-9)

    out = to_label_map(build_expander("graphcut", k=2, **PAPER_TEXT)(feats, probs, seeds, present), probs)
    # Labels: seeds kept; 1 and 3 gain class 1; node 5 (H=0.75 > theta) is cut to the
    # background; group C is foreground but H <= theta = 0.7 there, so it stays unlabelled.
    assert out[0].reshape(-1).tolist() == [1, 1, U, 1, U, U, U, U, 0]
    # With theta = 0.3 the cut alone decides: C joins class 1; B stays out.
    out = to_label_map(build_expander("graphcut", k=2, theta=0.3, **PAPER_TEXT)(feats, probs, seeds, present), probs)
    assert out[0].reshape(-1).tolist() == [1, 1, 1, 1, 1, U, 1, U, 0]
    # The published rule also cuts for background: H_0 = 0.9 at node 7 > theta, and B is on
    # the background side of that cut, so node 7 becomes background; node 5 (H_0 = 0.25) stays
    # open; in A, H_0 <= theta everywhere, so the cut for background decides nothing there.
    out = build_expander("graphcut", k=2, log_base=math.e)(feats, probs, seeds, present)
    assert to_label_map(out, probs)[0].reshape(-1).tolist() == [1, 1, U, 1, U, U, U, 0, 0]


def cut_energy(idx, src, sink, c0, fg):
    """Cut capacity when ``fg`` (bool, N) is the sink (class) side, straight from the definition."""
    n, k = idx.shape
    tails = np.repeat(np.arange(n), k)
    heads = idx.reshape(-1)
    crossing = fg[tails] != fg[heads]
    return float(np.where(fg, src, sink).sum() + c0 * crossing.sum())


def bruteforce_min_cut(idx, src, sink, c0):
    n = len(src)
    assign = np.array(list(itertools.product([False, True], repeat=n)))
    return min(cut_energy(idx, src, sink, c0, a) for a in assign)


def test_fig2_cut_is_the_bruteforce_minimum():
    src, sink = tlink_capacities(np.array(FIG2_H1), np.array(FIG2_SEEDS), 1, log_base=math.e)
    idx = np.array([sorted(FIG2_KNN[i]) for i in range(9)])
    side, flow = solve_cut(idx, src, sink, 1.0)
    assert cut_energy(idx, src, sink, 1.0, side) == pytest.approx(flow)
    assert bruteforce_min_cut(idx, src, sink, 1.0) == pytest.approx(flow)


@st.composite
def knn_graphs(draw, max_n=30, max_cap=50):
    n = draw(st.integers(2, max_n))
    k = draw(st.integers(1, min(5, n - 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    idx = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    src = rng.integers(0, max_cap + 1, n)
    sink = rng.integers(0, max_cap + 1, n)
    c0 = draw(st.integers(0, 6))
    return idx, src, sink, c0


@settings(max_examples=60, deadline=None, database=None)
@given(knn_graphs())
def test_flow_equals_scipy_maximum_flow(graph):
    idx, src, sink, c0 = graph
    n, k = idx.shape
    side, flow = solve_cut(idx, src.astype(float), sink.astype(float), float(c0))
    # The same network for scipy: s = n, t = n+1; every kNN pair one edge each way.
    s, t = n, n + 1
    tails = np.repeat(np.arange(n), k)
    heads = idx.reshape(-1)
    rows = np.concatenate([tails, heads, np.full(n, s), np.arange(n)])
    cols = np.concatenate([heads, tails, np.arange(n), np.full(n, t)])
    caps = np.concatenate([np.full(2 * n * k, c0), src, sink]).astype(np.int32)
    assert caps.sum() < 2**31  # scipy silently returns 0 on overflow
    net = csr_matrix((caps, (rows, cols)), shape=(n + 2, n + 2))  # duplicates are summed
    ref = maximum_flow(net, s, t).flow_value
    assert flow == ref
    assert cut_energy(idx, src, sink, c0, side) == ref


@settings(max_examples=40, deadline=None, database=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 10))
def test_graph_cut_one_is_the_minimum_energy_labelling(seed, n):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n))
    idx = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    prob = rng.random(n)
    seeds = rng.choice([0, 1, 2, U, U, U], n)
    cfg = GraphCutConfig(k=k, c0=float(rng.uniform(0.1, 2)), c1=5.0)
    side, flow = graph_cut_one(idx, prob, seeds, 1, cfg)
    src, sink = tlink_capacities(prob, seeds, 1, c1=cfg.c1)
    assert cut_energy(idx, src, sink, cfg.c0, side) == pytest.approx(flow, abs=1e-9)
    assert bruteforce_min_cut(idx, src, sink, cfg.c0) == pytest.approx(flow, abs=1e-9)


def test_graphcut_theta_and_seeds_on_random_batches():
    for seed in range(3):
        feats, probs, seeds, present = random_batch(b=4, seed=seed, sharp=6.0)
        for theta in (0.0, 0.5, 0.7, 0.9):
            out = to_label_map(build_expander("graphcut", theta=theta, k=5, **PAPER_TEXT)(feats, probs, seeds, present), probs)
            labelled = seeds != U
            assert torch.equal(out[labelled], seeds[labelled])
            grown = (out != U) & ~labelled
            assert not (out[grown] == 0).any()  # background never grows
            h = probs.gather(1, out.clamp_max(probs.shape[1] - 1)[:, None])[:, 0]
            assert (h[grown] > theta).all()
        assert grown.any()  # the check above had something to check


def test_theta_margin_thresholds_known_answers():
    cfg = GraphCutConfig(theta_margin=math.log(0.7 * 20 / 0.3))  # 0.7's margin with 21 classes
    theta = thresholds(cfg, np.array([21, 2, 4]))
    assert theta[0] == pytest.approx(0.7)
    assert theta[1] == pytest.approx(46.667 / 47.667, abs=1e-4)  # 0.979: two classes
    assert theta[2] == pytest.approx(46.667 / 49.667, abs=1e-4)
    assert thresholds(GraphCutConfig(theta_margin=math.log(7 / 3)), np.array([2]))[0] == pytest.approx(0.7)
    assert (thresholds(GraphCutConfig(theta=0.6), np.array([2, 5, 21])) == 0.6).all()  # off
    with pytest.raises(ExpanderOptionError, match="theta_margin"):
        build_expander("graphcut", theta_margin=-1.0)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), margin=st.floats(0.5, 5.0))
def test_theta_margin_is_each_image_cut_at_its_own_theta(seed, margin):
    # a batch whose images hold 2, 3 or 4 classes: each image's supervision is the fixed-theta
    # expander's at that image's theta_n, so the margin changes the threshold and nothing else
    feats, probs, seeds, present = random_batch(b=4, seed=seed, sharp=6.0)
    whole = build_expander("graphcut", k=5, theta_margin=margin)(feats, probs, seeds, present)
    theta_n = thresholds(GraphCutConfig(theta_margin=margin), present.sum(1).numpy())
    for i in range(4):
        alone = build_expander("graphcut", k=5, theta=float(theta_n[i]))(
            feats[i:i + 1], probs[i:i + 1], seeds[i:i + 1], present[i:i + 1])
        assert torch.equal(whole[i:i + 1], alone)


def test_theta_margin_holds_back_a_two_class_image_that_theta_lets_through():
    feats, probs, seeds, present, left, right = two_instances()  # H = 0.9 on both blobs:
    # above 0.7, below theta_2 = 0.979 (margin 3.84)
    fixed = to_label_map(build_expander("graphcut", **PAPER_TEXT)(feats, probs, seeds, present), probs)[0]
    margin = to_label_map(build_expander("graphcut", theta_margin=3.84, **PAPER_TEXT)(feats, probs, seeds, present),
                          probs)[0]
    grown = (left | right) & (seeds[0] == U)
    assert (fixed[grown] == 1).all()
    assert (margin[grown] == U).all()


def test_graphcut_conflict_carries_both_and_labels_the_higher_probability():
    # Two classes want the same unlabelled nodes; probabilities need not sum to one here.
    # The supervision carries both (the published multi-hot); one label is the more probable.
    feats = torch.zeros(1, 1, 1, 4)
    feats[0, 0, 0] = torch.tensor([0.0, 0.1, 0.2, 0.3])
    probs = torch.tensor([[0.05, 0.05, 0.05, 0.05],
                          [0.9, 0.9, 0.9, 0.9],
                          [0.8, 0.95, 0.8, 0.95]]).reshape(1, 3, 1, 4)
    seeds = torch.full((1, 1, 4), U)
    present = torch.tensor([[True, True, True]])
    out = build_expander("graphcut", k=3, **PAPER_TEXT)(feats, probs, seeds, present)
    assert out[0, 1:].all() and not out[0, 0].any()
    assert to_label_map(out, probs).reshape(-1).tolist() == [1, 2, 1, 2]


def test_graphcut_without_foreground_classes_returns_seeds():
    feats, probs, seeds, present = random_batch()
    present[:, 1:] = False
    seeds[seeds > 0] = U
    out = build_expander("graphcut", cut_background=False)(feats, probs, seeds, present)
    assert torch.equal(to_label_map(out, probs), seeds)
    assert int(out.sum()) == int((seeds != U).sum())  # exactly the seeds, one class each


@pytest.mark.parametrize("name", ["graphcut", "labelprop", "dsrg"])
def test_batched_equals_image_by_image(name):
    feats, probs, seeds, present = random_batch(b=4, seed=7, sharp=6.0)
    exp = build_expander(name, **({"k": 6} if name != "dsrg" else {}))
    whole = exp(feats, probs, seeds, present)
    for i in range(4):
        one = exp(feats[i:i + 1], probs[i:i + 1], seeds[i:i + 1], present[i:i + 1])
        assert torch.equal(whole[i:i + 1], one)
    assert (to_label_map(whole, probs) != seeds).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["graphcut", "labelprop", "dsrg"])
def test_gpu_and_cpu_give_the_same_labels(name):
    # the kNN runs on the features' device (one large chunk on the GPU, small ones on the CPU)
    for seed in range(3):
        batch = random_batch(b=4, h=21, w=21, seed=seed, sharp=6.0)
        exp = build_expander(name)
        cpu = exp(*batch)
        gpu = exp(*(t.cuda() for t in batch))
        assert torch.equal(cpu, gpu.cpu()), f"{name}, seed {seed}: {int((cpu != gpu.cpu()).sum())} labels differ"


def test_workers_give_the_same_labels_as_in_process():
    feats, probs, seeds, present = random_batch(b=6, seed=11, sharp=6.0)
    ref = build_expander("graphcut", workers=0, k=3)(feats, probs, seeds, present)
    with build_expander("graphcut", workers=2, k=3) as exp:
        assert torch.equal(exp(feats, probs, seeds, present), ref)
        assert torch.equal(exp(feats, probs, seeds, present), ref)  # the pool is reused
        pool = exp._pool
        assert pool is not None
    assert exp._pool is None  # closed by the context manager
    assert (to_label_map(ref, probs) != seeds).any()


# ----------------------------------------------------------------------------- two instances


def two_instances():
    """An 8x8 image: two separate 3x3 blobs of class 1 with alike features; seed only in the left one.

    The left blob includes a pixel that touches the rest only diagonally (8-connectivity).
    """
    h = w = 8
    g = torch.Generator().manual_seed(0)
    left = torch.zeros(h, w, dtype=torch.bool)
    left[1:4, 0:3] = True
    left[4, 3] = True  # diagonal neighbour of (3, 2)
    right = torch.zeros(h, w, dtype=torch.bool)
    right[4:7, 5:8] = True
    obj = left | right
    feats = torch.randn(1, 8, h, w, generator=g) * 0.05
    feats[0, 0] += torch.where(obj, 3.0, -3.0)
    h1 = torch.where(obj, 0.9, 0.004)
    probs = torch.stack([1 - h1, h1])[None]
    seeds = torch.full((1, h, w), U)
    seeds[0, 1, 0] = 1
    seeds[0, 0, 7] = seeds[0, 7, 0] = 0
    present = torch.tensor([[True, True]])
    return feats, probs, seeds, present, left, right


def test_dsrg_reaches_the_connected_instance_only():
    feats, probs, seeds, present, left, right = two_instances()
    out = build_expander("dsrg")(None, probs, seeds, present)[0]
    assert (out[left] == 1).all()          # diagonal pixel included: 8-connectivity
    assert (out[right] == U).all()          # no seed of class 1 connected to it
    # background H = 0.996 > 0.99, connected to the bg seeds: grows everywhere else
    assert (out[~(left | right)] == 0).all()
    out = build_expander("dsrg", bg_thresh=0.999)(None, probs, seeds, present)[0]
    assert (out[~(left | right)] == U).sum() == (~(left | right)).sum() - 2


def test_labelprop_carries_the_label_to_the_other_instance():
    feats, probs, seeds, present, left, right = two_instances()
    out = build_expander("labelprop", iters=30)(feats, probs, seeds, present)[0]
    assert (out[left] == 1).all() and (out[right] == 1).all()
    assert (out[~(left | right)] == 0).all()
    # theta gates every class: nothing may pass 0.9 < H
    out = build_expander("labelprop", theta=0.95)(feats, probs, seeds, present)[0]
    assert (out[left | right] == 1).sum() == 1  # only the seed


def test_labelprop_gaussian_weights_agree_on_clear_cases():
    feats, probs, seeds, present, left, right = two_instances()
    out = build_expander("labelprop", weights="gaussian")(feats, probs, seeds, present)[0]
    assert (out[right] == 1).all()


def test_graphcut_reaches_the_other_instance():
    feats, probs, seeds, present, left, right = two_instances()
    out = to_label_map(build_expander("graphcut", **PAPER_TEXT)(feats, probs, seeds, present), probs)[0]
    assert (out[left | right] == 1).all()
    bg = ~(left | right)
    assert (out[bg] == U).sum() == bg.sum() - 2  # background stays its seeds


def test_graphcut_cut_background_grows_background_like_the_published_code():
    feats, probs, seeds, present, left, right = two_instances()
    out = to_label_map(build_expander("graphcut")(feats, probs, seeds, present), probs)[0]
    obj = left | right
    assert (out[obj] == 1).all()  # foreground as without the option
    assert (out[~obj] == 0).all()  # background now grows from its two seeds to all of it
    probs_flat = probs.clone()
    probs_flat[0, 0] = 0.6  # below theta: the background may not grow anywhere
    out = to_label_map(build_expander("graphcut")(feats, probs_flat, seeds, present), probs_flat)[0]
    assert ((out == 0) == (seeds[0] == 0)).all()


def test_labelprop_operators_are_the_symmetric_normalised_knn_graph():
    from stages.core.expanders.labelprop import knn_operators

    d2, idx = knn(torch.randn(2, 30, 4, generator=torch.Generator().manual_seed(5)), 3)
    a, a_t, dinv = knn_operators(d2, idx, "gaussian")
    a, a_t = a.to_dense(), a_t.to_dense()
    assert torch.allclose(a.T, a_t)
    w = a + a_t
    assert torch.allclose(w.sum(1), dinv.pow(-2))
    # block-diagonal: no weight between the two images
    assert w[:30, 30:].abs().sum() == 0
    # each node's row of A holds its own kNN with exp(-d^2 / mean d^2) weights
    expected = torch.exp(-d2[0, 0] / d2[0].mean())
    assert torch.allclose(a[0, idx[0, 0]], expected)
