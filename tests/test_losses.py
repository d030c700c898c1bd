import math

import pytest
import torch

from stages.core.maps import IGNORE
from stages.core.train.losses import balanced_seed_loss, boundary_loss


def neg_log_softmax(row, k):
    return -(row[k] - math.log(sum(math.exp(v) for v in row)))


def pixel_logits(rows):
    """(h, w, C) nested lists -> (1, C, h, w) tensor."""
    return torch.tensor(rows, dtype=torch.float64).permute(2, 0, 1).unsqueeze(0)


def test_seed_loss_matches_hand_computation():
    rows = [[[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]],
            [[1.0, 1.0, 3.0], [5.0, -5.0, 0.0]]]
    target = torch.tensor([[[0, 1], [2, IGNORE]]])
    fg = (neg_log_softmax(rows[0][1], 1) + neg_log_softmax(rows[1][0], 2)) / 2
    bg = neg_log_softmax(rows[0][0], 0)
    got = balanced_seed_loss(pixel_logits(rows), target)
    assert got.dtype == torch.float32 and got.ndim == 0
    assert got.item() == pytest.approx(fg + bg, rel=1e-6)


def test_seed_loss_balances_foreground_and_background():
    # One foreground seed among 99 background seeds: the foreground term
    # still counts as much as the whole background term.
    h, w = 10, 10
    logits = torch.zeros(1, 2, h, w)
    logits[0, 0] = 2.0  # background confident everywhere
    target = torch.zeros(1, h, w, dtype=torch.long)
    target[0, 4, 4] = 1
    a = neg_log_softmax([2.0, 0.0], 1)
    b = neg_log_softmax([2.0, 0.0], 0)
    got = balanced_seed_loss(logits, target).item()
    assert got == pytest.approx(a + b, rel=1e-6)
    assert got != pytest.approx((a + 99 * b) / 100, rel=1e-3)
    # Means run over the whole batch, not per image.
    two = balanced_seed_loss(logits.repeat(2, 1, 1, 1), target.repeat(2, 1, 1)).item()
    assert two == pytest.approx(got, rel=1e-6)


def test_empty_terms_contribute_zero():
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    target = torch.full((2, 5, 5), IGNORE, dtype=torch.long)
    loss = balanced_seed_loss(logits, target)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert torch.all(logits.grad == 0)

    only_bg = torch.full((2, 5, 5), IGNORE, dtype=torch.long)
    only_bg[0, 0, 0] = 0
    expected = -torch.log_softmax(logits.detach()[0, :, 0, 0], 0)[0].item()
    # per image (the published code): image 1 has no seeds and adds 0 to the batch mean
    assert balanced_seed_loss(logits, only_bg).item() == pytest.approx(expected / 2, rel=1e-5)
    assert balanced_seed_loss(logits, only_bg, per_image=False).item() == pytest.approx(expected, rel=1e-5)


def test_seed_loss_gradient_only_on_labelled_pixels():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), IGNORE, dtype=torch.long)
    target[0, 1, 2] = 2
    target[0, 3, 0] = 0
    balanced_seed_loss(logits, target).backward()
    touched = logits.grad.abs().sum(1)[0] > 0
    assert touched.sum() == 2 and touched[1, 2] and touched[3, 0]


def test_seed_loss_rejects_bad_labels_and_shapes():
    logits = torch.randn(1, 3, 2, 2)
    with pytest.raises(ValueError):
        balanced_seed_loss(logits, torch.tensor([[[0, 3], [1, 2]]]))
    with pytest.raises(ValueError):
        balanced_seed_loss(logits, torch.zeros(1, 3, 3, dtype=torch.long))


def test_boundary_loss_zero_when_q_equals_h():
    logits = torch.randn(2, 5, 6, 7)
    q = torch.softmax(logits, 1)
    assert boundary_loss(logits, q).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.softmax(torch.randn(2, 5, 6, 7), 1)
    assert boundary_loss(logits, other).item() > 0.01


def test_boundary_loss_matches_hand_kl():
    rows = [[[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]]]
    qs = [[[0.7, 0.3, 0.0], [0.1, 0.1, 0.8]]]  # a zero: 0 log 0 counts as 0
    kl = 0.0
    for row, q in zip(rows[0], qs[0]):
        for k in range(3):
            if q[k] > 0:
                kl += q[k] * (math.log(q[k]) + neg_log_softmax(row, k))
    expected = kl / 2  # averaged over the two pixels
    got = boundary_loss(pixel_logits(rows), pixel_logits(qs))
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_boundary_loss_treats_q_as_constant_and_handles_bf16():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    q = torch.softmax(torch.randn(1, 3, 4, 4), 1).requires_grad_(True)
    boundary_loss(logits, q, ratio_clip=None).backward()
    assert q.grad is None and logits.grad is not None
    # The gradient of KL(Q || softmax(z)) in z is softmax(z) - Q, per pixel / N.
    expected = (torch.softmax(logits.detach(), 1) - q.detach()) / 16
    torch.testing.assert_close(logits.grad, expected, atol=1e-6, rtol=1e-5)
    # with DSRG's clip, a class whose ratio Q/H is outside [0.05, 20] passes no gradient:
    # the gradient is sum over the unclipped classes of -Q_c (onehot_c - softmax) / N
    logits.grad = None
    boundary_loss(logits, q).backward()
    p = torch.softmax(logits.detach(), 1)
    inside = ((q.detach() / p) >= 0.05) & ((q.detach() / p) <= 20)
    w = q.detach() * inside
    expected = (p * w.sum(1, keepdim=True) - w) / 16
    torch.testing.assert_close(logits.grad, expected, atol=1e-6, rtol=1e-5)

    loss = boundary_loss(logits.detach().bfloat16(), q.detach())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    with pytest.raises(ValueError):
        boundary_loss(logits, q[:, :2])
