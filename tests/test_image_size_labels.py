"""``to_image_size``: an expander's score-map output written at the image's size.

Known answers on hand-built 4x4 score maps of 16x16 images (stride 4): the seeds keep
their own resolution, only what the expander changed is upsampled.
"""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.core.expanders import to_image_size
from stages.core.maps import resize_labels
from stages.core.maps import supervision_mask as multi_hot

U = 255


def _probs(k1: int, h: int = 4, w: int = 4, favour: int = 0) -> torch.Tensor:
    p = torch.full((1, k1, h, w), 0.1)
    p[:, favour] = 0.9
    return p / p.sum(1, keepdim=True)


def _fine_seeds() -> torch.Tensor:
    # one-pixel structure the 4x4 score map cannot hold
    s = torch.full((1, 16, 16), U, dtype=torch.long)
    s[0, 1, 1:14] = 1
    s[0, 10:16, 3] = 0
    s[0, 7, 7] = 2
    return s


def test_unchanged_supervision_gives_the_seeds_pixel_for_pixel():
    seeds = _fine_seeds()
    small = resize_labels(seeds, (4, 4))
    out = to_image_size(small, small, seeds, _probs(3))
    torch.testing.assert_close(out, seeds)


def test_growth_is_upsampled_and_seeds_stay():
    seeds = _fine_seeds()
    small = resize_labels(seeds, (4, 4))
    sup = small.clone()
    sup[0, 2:4, 2:4] = 1  # the expander adds class 1 in the bottom-right quarter
    out = to_image_size(sup, small, seeds, _probs(3, favour=1))
    grown = (sup[0] == 1) & (small[0] != 1)
    region = torch.nn.functional.interpolate(grown[None, None].float(), size=(16, 16), mode="bilinear") >= 0.5
    region = region[0, 0]
    assert region.any()
    free = seeds[0] == U
    # the upsampled added region is class 1 on every unseeded pixel ...
    assert (out[0][region & free] == 1).all()
    # ... and every seed and every pixel outside it is exactly the seeds
    torch.testing.assert_close(out[0][~region | ~free], seeds[0][~region | ~free])


def test_a_seed_taken_away_is_unlabelled_and_double_claims_follow_probability():
    seeds = torch.full((1, 16, 16), U, dtype=torch.long)
    seeds[0, :8, :8] = 0
    small = resize_labels(seeds, (4, 4))
    k1 = 3
    sup = multi_hot(small, k1).clone()
    sup[0, 0, :2, :2] = False  # the cut takes background from the top-left seeds ...
    sup[0, 2, 0, 0] = True  # ... and gives the corner block class 2 only
    out = to_image_size(sup, small, seeds, _probs(k1, favour=2))
    # on seeded pixels the change follows the position the expander saw, exactly
    assert (out[0, :4, :4] == 2).all()
    assert (out[0, :8, :8] == U).sum() > 0  # the rest of the removed quarter has no label
    assert set(out[0, 8:, 8:].unique().tolist()) == {U}
    # both classes claimed: the more probable one wins
    both = sup.clone()
    both[0, 0, 0, 0] = True
    assert (to_image_size(both, small, seeds, _probs(k1, favour=0))[0, :4, :4] == 0).all()
    assert (to_image_size(both, small, seeds, _probs(k1, favour=2))[0, :4, :4] == 2).all()


def _random_labels(g: torch.Generator, k1: int, shape) -> torch.Tensor:
    """Labels 0..k1-1 and about one position in k1+1 unlabelled."""
    labels = torch.randint(0, k1 + 1, shape, generator=g)
    labels[labels == k1] = U
    return labels


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_random_seeds_survive_an_expander_that_changes_nothing(seed, k1):
    g = torch.Generator().manual_seed(seed)
    seeds = _random_labels(g, k1, (1, 24, 20))
    small = resize_labels(seeds, (3, 3))
    probs = torch.rand((1, k1, 3, 3), generator=g).softmax(1)
    np.testing.assert_array_equal(to_image_size(small, small, seeds, probs).numpy(), seeds.numpy())
    # and as a multi-hot claim map
    np.testing.assert_array_equal(to_image_size(multi_hot(small, k1), small, seeds, probs).numpy(), seeds.numpy())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_an_expander_that_keeps_seeds_keeps_every_seed_pixel(seed, k1):
    # DSRG, labelprop: seeds copied, classes added on unseeded positions only
    g = torch.Generator().manual_seed(seed)
    seeds = _random_labels(g, k1, (1, 24, 20))
    small = resize_labels(seeds, (3, 3))
    grown = _random_labels(g, k1, small.shape)
    sup = torch.where(small == U, grown, small)
    out = to_image_size(sup, small, seeds, torch.rand((1, k1, 3, 3), generator=g).softmax(1))
    seeded = seeds != U
    np.testing.assert_array_equal(out[seeded].numpy(), seeds[seeded].numpy())
    # and an unseeded pixel takes a class only from growth
    assert set(out[~seeded].unique().tolist()) <= set(sup.unique().tolist()) | {U}
