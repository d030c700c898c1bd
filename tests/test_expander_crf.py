"""Which probabilities each expander grows on in a training step (``train.make_loss``).

``dsrg`` grows on its own dense CRF of H (DSRG's: U = -p), run through the same CRF pool
as the boundary loss's, which keeps its own Q (U = -log p); with ``refine_unary=neglog``
it reuses the boundary loss's Q and no second CRF runs. The other expanders grow on H.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from stages import train
from stages.core.cues.crf import BOUNDARY_CRF, CrfPool, crf_on_batch
from stages.core.expanders import EXPANDERS, build_expander
from stages.core.train.fit import RunConfig
from stages.core.train.losses import balanced_seed_loss, boundary_loss
from stages.train import TrainConfig, make_loss

pytest.importorskip("pydensecrf")

U = 255
DSRG_CRF = replace(BOUNDARY_CRF, unary="prob")


def _step_inputs(seed: int = 0, b: int = 2, n_cls: int = 4, h: int = 10, w: int = 10):
    """Smooth, confident score maps (so DSRG grows), seeds of present classes, images 8x larger."""
    g = torch.Generator().manual_seed(seed)
    present = torch.zeros(b, n_cls, dtype=torch.bool)
    present[:, 0] = True
    for i in range(b):
        present[i, 1 + torch.randperm(n_cls - 1, generator=g)[:1]] = True
    coarse = torch.randn(b, n_cls, 3, 3, generator=g) * 6
    coarse[~present] -= 20.0
    logits = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    feats = torch.randn(b, 8, h, w, generator=g)
    seeds = torch.full((b, h, w), U, dtype=torch.long)
    for i in range(b):
        cls = torch.nonzero(present[i]).flatten()
        pick = torch.rand(h, w, generator=g) < 0.15
        seeds[i][pick] = cls[torch.randint(len(cls), (int(pick.sum()),), generator=g)]
    x = torch.rand(b, 3, 8 * h, 8 * w, generator=g)
    batch = {"image": x, "raw": (x.permute(0, 2, 3, 1) * 255).to(torch.uint8), "labels": present[:, 1:].float(),
             "map0": torch.repeat_interleave(torch.repeat_interleave(seeds, 8, 1), 8, 2)}

    def model(_x, return_features=True):
        return logits.clone().requires_grad_(True), feats

    return model, batch, logits


@pytest.fixture
def recorded(monkeypatch):
    """What every expander's ``_expand`` received as ``probs``, and each CRF batch submitted."""
    seen = {"probs": [], "crfs": []}
    for cls in {EXPANDERS.get(n) for n in EXPANDERS.names()}:
        def spy(self, features, probs, seeds, present, _orig=cls._expand):
            seen["probs"].append(probs.clone())
            return _orig(self, features, probs, seeds, present)
        monkeypatch.setattr(cls, "_expand", spy)
    submit = train.submit_batch

    def submit_spy(images, probs, cfg, pool=None):
        seen["crfs"].append(cfg)
        return submit(images, probs, cfg, pool)

    monkeypatch.setattr(train, "submit_batch", submit_spy)
    return seen


def _run_step(expander: str, boundary: str, options=None, workers: int = 0, seed: int = 0, iteration: int = 0, **kw):
    model, batch, logits = _step_inputs(seed)
    cfg = TrainConfig(run=RunConfig(out="unused"), seeds="unused", expander=expander,
                      expander_options=options or {}, boundary_loss=boundary, **kw)
    with build_expander(expander, **(options or {})) as exp, CrfPool(workers) as pool:
        loss, stats = make_loss(cfg, exp, pool)(model, batch, torch.device("cpu"), iteration)
    probs = logits.softmax(1)
    return loss, stats, probs, batch


@pytest.mark.parametrize("boundary", ["crf", "none"])
def test_dsrg_grows_on_its_own_prob_unary_crf(recorded, boundary):
    loss, stats, probs, batch = _run_step("dsrg", boundary)
    expected = crf_on_batch(batch["raw"].numpy(), probs.numpy(), DSRG_CRF)
    (got,) = recorded["probs"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # really another input than the boundary loss's Q
    q = crf_on_batch(batch["raw"].numpy(), probs.numpy(), BOUNDARY_CRF)
    assert np.abs(q - expected).max() > 1e-2
    if boundary == "crf":
        # the expander's CRF is submitted first (it is waited for first), the boundary loss keeps its own Q
        assert recorded["crfs"] == [DSRG_CRF, BOUNDARY_CRF]
        assert stats["boundary_loss"] == pytest.approx(float(boundary_loss(probs.log(), torch.from_numpy(q))), abs=1e-5)
    else:
        assert recorded["crfs"] == [DSRG_CRF] and "boundary_loss" not in stats


def test_dsrg_neglog_reuses_the_boundary_loss_q(recorded):
    loss, stats, probs, batch = _run_step("dsrg", "crf", {"refine_unary": "neglog"})
    q = crf_on_batch(batch["raw"].numpy(), probs.numpy(), BOUNDARY_CRF)
    (got,) = recorded["probs"]
    np.testing.assert_allclose(got.numpy(), q, atol=1e-6)
    assert recorded["crfs"] == [BOUNDARY_CRF]  # one CRF per step, as before the option existed
    sup = build_expander("dsrg", refine_unary="neglog")(None, torch.from_numpy(q), _seeds(batch), _present(batch))
    expected = balanced_seed_loss(probs.log(), sup) + boundary_loss(probs.log(), torch.from_numpy(q))
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-5)
    # without the boundary loss the expander's neglog CRF still runs, for the expander alone
    recorded["probs"].clear()
    recorded["crfs"].clear()
    _run_step("dsrg", "none", {"refine_unary": "neglog"})
    assert recorded["crfs"] == [BOUNDARY_CRF]
    np.testing.assert_allclose(recorded["probs"][0].numpy(), q, atol=1e-6)


def _seeds(batch):
    return batch["map0"][:, ::8, ::8]


def _present(batch):
    return torch.cat([torch.ones(len(batch["labels"]), 1, dtype=torch.bool), batch["labels"] > 0], 1)


@pytest.mark.parametrize("name", ["graphcut", "labelprop", "none"])
@pytest.mark.parametrize("boundary", ["crf", "none"])
def test_other_expanders_grow_on_h_and_add_no_crf(recorded, name, boundary):
    _, _, probs, _ = _run_step(name, boundary, {"k": 4} if name != "none" else {})
    (got,) = recorded["probs"]
    torch.testing.assert_close(got, probs, rtol=0, atol=0)
    assert recorded["crfs"] == ([BOUNDARY_CRF] if boundary == "crf" else [])


def test_no_expander_crf_before_expand_after(recorded):
    _run_step("dsrg", "crf", expand_after=5, iteration=4)
    assert recorded["crfs"] == [BOUNDARY_CRF]  # the seeds alone: only the boundary loss's CRF
    recorded["crfs"].clear()
    _run_step("dsrg", "crf", expand_after=5, iteration=5)
    assert recorded["crfs"] == [DSRG_CRF, BOUNDARY_CRF]


def test_worker_pool_gives_the_in_process_step():
    """Both CRFs through one worker process: the same loss and supervision as in-process."""
    in_process = _run_step("dsrg", "crf", seed=1)
    workers = _run_step("dsrg", "crf", seed=1, workers=1)
    assert float(workers[0].detach()) == float(in_process[0].detach()) and workers[1] == in_process[1]
