from dataclasses import replace

import numpy as np
import pytest

from stages.core.cues.crf import BOUNDARY_CRF, CrfConfig, CrfPool, crf_on_batch, dense_crf
from stages.core.errors import DgcnError


def two_region_case(h=40, w=60, seed=0, signal=0.8):
    """Left half red, right half blue; labels 0 / 1; noisy probabilities for 3 classes."""
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = (200, 30, 30)
    image[:, w // 2 :] = (30, 30, 200)
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2 :] = 1
    logits = rng.normal(0.0, 1.0, (3, h, w))
    logits[0] += signal * (truth == 0)
    logits[1] += signal * (truth == 1)
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    return image, probs.astype(np.float32), truth


def test_output_is_a_distribution_per_pixel():
    image, probs, _ = two_region_case()
    q = dense_crf(image, probs)
    assert q.shape == probs.shape and q.dtype == np.float32
    assert np.all(q >= 0) and np.all(np.isfinite(q))
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)


def test_crf_follows_colour_regions_better_than_the_input():
    image, probs, truth = two_region_case()
    before = (probs.argmax(0) == truth).mean()
    after = (dense_crf(image, probs).argmax(0) == truth).mean()
    assert before < 0.75  # the case really is noisy
    assert after > 0.97
    assert after - before > 0.2


def test_zero_probabilities_and_zero_iterations():
    image, probs, _ = two_region_case(h=12, w=16)
    probs = np.zeros_like(probs)
    probs[0] = 1.0  # exact zeros elsewhere: log(0) must not reach the solver
    q = dense_crf(image, probs)
    assert np.all(np.isfinite(q)) and np.all(q.argmax(0) == 0)
    image, probs, _ = two_region_case(h=12, w=16)
    q0 = dense_crf(image, probs, CrfConfig(iters=0))
    np.testing.assert_allclose(q0, probs, atol=1e-4)


def test_non_contiguous_inputs_are_accepted():
    image, probs, _ = two_region_case()
    ref = dense_crf(image, probs)
    img_f = np.asfortranarray(image)
    probs_t = np.ascontiguousarray(probs.transpose(1, 2, 0)).transpose(2, 0, 1)
    assert not probs_t.flags.c_contiguous
    np.testing.assert_allclose(dense_crf(img_f, probs_t.astype(np.float64)), ref, atol=1e-6)


def test_shape_mismatch_and_bad_config():
    image, probs, _ = two_region_case()
    with pytest.raises(ValueError):
        dense_crf(image[:-1], probs)
    with pytest.raises(DgcnError):
        CrfConfig(bi_sxy=0)
    with pytest.raises(DgcnError, match="CRF unary must be neglog or prob, got 'log'") as err:
        CrfConfig(unary="log")
    assert "\n" not in str(err.value)
    assert BOUNDARY_CRF.xy_scale == 12.0 and CrfConfig().scaled(2.0).xy_scale == 2.0
    assert BOUNDARY_CRF.unary == CrfConfig().unary == "neglog"


def _pydensecrf(image, unary, cfg):
    """The solver called directly on a given unary energy, with ``cfg``'s kernels."""
    import pydensecrf.densecrf as dcrf

    n, h, w = unary.shape
    d = dcrf.DenseCRF2D(w, h, n)
    d.setUnaryEnergy(np.ascontiguousarray(unary.reshape(n, -1), dtype=np.float32))
    d.addPairwiseGaussian(sxy=cfg.gauss_sxy / cfg.xy_scale, compat=cfg.gauss_compat)
    d.addPairwiseBilateral(sxy=cfg.bi_sxy / cfg.xy_scale, srgb=cfg.bi_srgb,
                           rgbim=np.ascontiguousarray(image), compat=cfg.bi_compat)
    q = np.array(d.inference(cfg.iters), dtype=np.float32).reshape(n, h, w)
    q = np.maximum(q, cfg.min_prob)
    return q / q.sum(0, keepdims=True)


def test_prob_unary_is_minus_p_floored_not_renormalised():
    """U = -p (DSRG's CRF layer): p floored at min_prob and not renormalised, as there."""
    pytest.importorskip("pydensecrf")
    _, probs, _ = two_region_case(h=41, w=41)
    # a noisy image: on the two flat regions the kernels alone decide (Q saturates either way)
    image = np.random.default_rng(1).integers(0, 256, (41, 41, 3), dtype=np.uint8)
    probs[:, :5] = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]].T[:, :, None]  # rows of exact 0 and 1 to floor
    cfg = replace(BOUNDARY_CRF, unary="prob")
    ours = dense_crf(image, probs, cfg)
    np.testing.assert_allclose(ours, _pydensecrf(image, -np.maximum(probs, cfg.min_prob), cfg), atol=1e-6)
    # renormalising after the floor would be another unary under -p (seen with a high floor)
    high = replace(cfg, min_prob=0.2, iters=2)
    floored = np.maximum(probs, high.min_prob)
    np.testing.assert_allclose(dense_crf(image, probs, high), _pydensecrf(image, -floored, high), atol=1e-6)
    assert np.abs(_pydensecrf(image, -floored / floored.sum(0), high) - dense_crf(image, probs, high)).max() > 1e-2
    # the neglog unary on the same input is another Q
    assert np.abs(dense_crf(image, probs, BOUNDARY_CRF) - ours).max() > 0.05


def test_prob_unary_with_zero_iterations_is_the_softmax_of_p():
    # mean field starts at Q0 proportional to exp(-U) = exp(p)
    image, probs, _ = two_region_case(h=12, w=16)
    for p in (probs, 2 * probs):  # p as given: renormalising 2p would give softmax(p)
        q0 = dense_crf(image, p, CrfConfig(iters=0, unary="prob"))
        np.testing.assert_allclose(q0, np.exp(p) / np.exp(p).sum(0, keepdims=True), atol=1e-5)


def test_crf_on_batch_downscales_and_improves_at_score_map_size():
    big = [two_region_case(h=321, w=321, seed=s) for s in range(2)]
    small = [two_region_case(h=41, w=41, seed=s) for s in range(2)]
    images = np.stack([c[0] for c in big])
    probs = np.stack([c[1] for c in small])
    truths = [c[2] for c in small]
    q = crf_on_batch(images, probs, BOUNDARY_CRF)
    assert q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    # Downscaling 321 -> 41 blends colours in the columns at the edge; only
    # the columns whose colour is unambiguous are scored.
    keep = np.ones((41, 41), bool)
    keep[:, 19:22] = False
    for b in range(2):
        before = (probs[b].argmax(0) == truths[b])[keep].mean()
        after = (q[b].argmax(0) == truths[b])[keep].mean()
        assert after - before > 0.15, (before, after)
    with pytest.raises(ValueError):
        crf_on_batch(images[:1], probs)


def test_pool_matches_in_process():
    cases = [two_region_case(h=30, w=40, seed=s) for s in range(4)]
    images = [c[0] for c in cases]
    probs = [c[1] for c in cases]
    with CrfPool(0) as inline:
        expected = inline.map(images, probs)
    with CrfPool(2) as pool:
        got = pool.map(images, probs)
        futures = pool.submit_many(images, probs)  # the overlap-friendly form
        got_later = [f.result() for f in futures]
        batch = crf_on_batch(np.stack(images), np.stack(probs), CrfConfig(), pool=pool)
        # a configuration per submission (the training step's two CRFs share one pool)
        prob_cfg = CrfConfig(unary="prob")
        got_prob = pool.map(images, probs, prob_cfg)
    for e, g, g2, b in zip(expected, got, got_later, batch):
        np.testing.assert_array_equal(e, g)
        np.testing.assert_array_equal(e, g2)
        np.testing.assert_array_equal(e, b)
    for im, p, g in zip(images, probs, got_prob):
        np.testing.assert_array_equal(dense_crf(im, p, prob_cfg), g)
    with CrfPool(0) as inline:
        with pytest.raises(ValueError):
            inline.submit(images[0][:-1], probs[0]).result()
    with pytest.raises(DgcnError):
        CrfPool(-1)
