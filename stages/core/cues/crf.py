"""Fully-connected CRF (Kraehenbuehl & Koltun, NIPS 2011) over softmax maps.

Used twice in DGCN: for the boundary loss, where Q is the CRF of the network's
probabilities H on the image downscaled to the score-map size (paper eq. 5),
and for test-time refinement at full image size.

The solver is ``pydensecrf`` as installed by the ``pydensecrf2`` package (the
2018 ``pydensecrf`` no longer builds on Python 3.11). It is single-threaded and
holds the GIL, so :class:`CrfPool` runs it in worker processes; a training step
can submit the batch, run other host work, and collect the results later.
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import DgcnError
from ..io.images import resize_image

# Probabilities of exactly 0 would give an infinite unary; 1e-5 is the floor
# the SEC/DSRG family used before taking the log.
PROB_EPS = 1e-5

# the unary energies :class:`CrfConfig` can make of the probabilities p: -log p, -p
UNARIES = ("neglog", "prob")


@dataclass(frozen=True)
class CrfConfig:
    """Mean-field iterations and kernel parameters.

    The defaults are DeepLab's (Chen et al.) dense-CRF settings for PASCAL VOC
    images of about 500x375: a smoothness kernel (``gauss_*``) and an
    appearance kernel (``bi_*``). ``*_sxy`` are standard deviations in pixels
    of the image the CRF runs on and ``bi_srgb`` is in 0-255 colour units.

    Pixel distances do not shrink with the image, so on a downscaled image the
    spatial deviations must shrink too: ``xy_scale`` divides both ``gauss_sxy``
    and ``bi_sxy``. The published boundary-loss code (SEC, DSRG, DGCN) runs the
    CRF on the 41x41 score-map-sized image with a divisor of 12; see
    :data:`BOUNDARY_CRF`. At full image size leave it at 1.

    ``unary`` is the energy made of the probabilities p: ``"neglog"``, U = -log p (DeepLab,
    the DGCN boundary loss: pydensecrf's ``unary_from_softmax``), or ``"prob"``, U = -p, the
    probabilities themselves (SEC/DSRG's ``CRF`` wrapper, ``set_unary_energy(-probs)``): a
    unary at most 1 apart between classes, so the pairwise kernels dominate and Q is a much
    smoother map than with -log p.
    """

    iters: int = 10
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bi_sxy: float = 80.0
    bi_srgb: float = 13.0
    bi_compat: float = 10.0
    xy_scale: float = 1.0
    # floor of the input probabilities and of Q (Q renormalised after): the published
    # boundary-loss and DSRG refinement code floors both at 1e-4
    min_prob: float = PROB_EPS
    unary: str = "neglog"  # or "prob"; see above

    def __post_init__(self) -> None:
        if self.unary not in UNARIES:
            raise DgcnError(f"CRF unary must be {' or '.join(UNARIES)}, got {self.unary!r}")
        if not 0 < self.min_prob < 0.5:
            raise DgcnError(f"CRF min_prob must be in (0, 0.5), got {self.min_prob}")
        if self.iters < 0:
            raise DgcnError(f"CRF iterations must be >= 0, got {self.iters}")
        for name in ("gauss_sxy", "bi_sxy", "bi_srgb", "xy_scale"):
            if not getattr(self, name) > 0:
                raise DgcnError(f"CRF parameter {name} must be > 0, got {getattr(self, name)}")

    def scaled(self, xy_scale: float) -> "CrfConfig":
        return replace(self, xy_scale=xy_scale)


# The configuration the boundary loss uses on score-map-sized images: the published
# code's (hustvl/DGCN ``crf_operation``: U = -log p; its kernels, divisor and floor are
# DSRG's ``CRFLayer``'s too). DSRG's region growing runs the same kernels with U = -p:
# ``replace(BOUNDARY_CRF, unary="prob")``, see ``expanders.dsrg``.
BOUNDARY_CRF = CrfConfig(xy_scale=12.0, min_prob=1e-4)


def _check_inputs(image: np.ndarray, probs: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
    if probs.ndim != 3:
        raise ValueError(f"probs must be (C, H, W), got shape {probs.shape}")
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"probs spatial size {probs.shape[1:]} does not match image size {image.shape[:2]}"
        )


def dense_crf(image: np.ndarray, probs: np.ndarray, cfg: CrfConfig = CrfConfig()) -> np.ndarray:
    """Refine per-pixel class probabilities with a dense CRF.

    ``image``: (H, W, 3) uint8 RGB. ``probs``: (C, H, W), each pixel a
    distribution (it is clamped to ``cfg.min_prob``; with ``cfg.unary == "neglog"`` also
    renormalised, so zeros and unnormalised inputs are accepted). Returns Q as (C, H, W)
    float32 whose C values at each pixel sum to 1. With ``cfg.iters == 0`` Q is the input
    distribution (``"neglog"``) or its softmax (``"prob"``: mean field starts at exp(-U)).
    """
    dcrf = _densecrf()

    _check_inputs(image, probs)
    n_classes, height, width = probs.shape
    p = np.clip(np.asarray(probs, dtype=np.float32), cfg.min_prob, None)
    if cfg.unary == "neglog":
        # under -log p the renormalisation shifts every unary of a pixel alike, which mean
        # field ignores; under -p it would scale them instead, and DSRG's CRF layer floors
        # its input (a softmax) without renormalising, so "prob" takes p as floored
        p /= p.sum(axis=0, keepdims=True)
        energy = -np.log(p)
    else:
        energy = -p
    # pydensecrf reads raw buffers through writable memoryviews: anything not
    # C-contiguous, of the exact dtype and writable (PIL-backed arrays are
    # read-only) is rejected or read in the wrong order.
    unary = np.require(energy.reshape(n_classes, -1), np.float32, ["C", "W"])
    rgb = np.require(image, np.uint8, ["C", "W"])

    crf = dcrf.DenseCRF2D(width, height, n_classes)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=cfg.gauss_sxy / cfg.xy_scale, compat=cfg.gauss_compat)
    crf.addPairwiseBilateral(
        sxy=cfg.bi_sxy / cfg.xy_scale, srgb=cfg.bi_srgb, rgbim=rgb, compat=cfg.bi_compat
    )
    q = np.asarray(crf.inference(cfg.iters), dtype=np.float32).reshape(n_classes, height, width)
    # The solver normalises in float32; renormalising keeps sums at 1 to the
    # precision callers (KL terms, argmax ties) expect.
    np.maximum(q, cfg.min_prob, out=q)
    q /= q.sum(axis=0, keepdims=True)
    return q


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise DgcnError(
            "the dense CRF needs pydensecrf: pip install pydensecrf2 "
            "(or run without it: --boundary-loss none for train, --no-crf for infer/retrain)"
        ) from None
    return dcrf


def _warm() -> int:
    _densecrf()  # import cost paid at pool start, not per image
    return 0


class CrfPool:
    """Runs :func:`dense_crf` in ``workers`` processes; ``workers=0`` runs in-process.

    Workers are started with ``spawn`` so a parent that has initialised CUDA
    or OpenMP threads is never forked, and are started in ``__init__`` so the
    first training step does not pay for it. Spawned workers re-import the
    parent's ``__main__``, so a script that creates a pool needs the usual
    ``if __name__ == "__main__":`` guard. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, workers: int, cfg: CrfConfig = CrfConfig()) -> None:
        if workers < 0:
            raise DgcnError(f"CRF workers must be >= 0, got {workers}")
        self.workers = workers
        self.cfg = cfg
        self._executor: ProcessPoolExecutor | None = None
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("spawn")
            )
            for fut in [self._executor.submit(_warm) for _ in range(workers)]:
                fut.result()

    def submit(self, image: np.ndarray, probs: np.ndarray, cfg: CrfConfig | None = None) -> Future:
        """One image; the future's result is Q (C, H, W) float32. ``cfg`` overrides the pool's."""
        cfg = self.cfg if cfg is None else cfg
        if self._executor is None:
            fut: Future = Future()
            try:
                fut.set_result(dense_crf(image, probs, cfg))
            except Exception as err:  # delivered through the future, as a pool would
                fut.set_exception(err)
            return fut
        _check_inputs(image, probs)
        return self._executor.submit(dense_crf, image, probs, cfg)

    def submit_many(
        self,
        images: Sequence[np.ndarray],
        probs: Sequence[np.ndarray],
        cfg: CrfConfig | None = None,
    ) -> list[Future]:
        if len(images) != len(probs):
            raise ValueError(f"{len(images)} images but {len(probs)} probability maps")
        return [self.submit(im, p, cfg) for im, p in zip(images, probs)]

    def map(
        self,
        images: Sequence[np.ndarray],
        probs: Sequence[np.ndarray],
        cfg: CrfConfig | None = None,
    ) -> list[np.ndarray]:
        return [f.result() for f in self.submit_many(images, probs, cfg)]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "CrfPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def submit_batch(
    images_uint8: np.ndarray,
    probs: np.ndarray,
    cfg: CrfConfig = BOUNDARY_CRF,
    pool: CrfPool | None = None,
) -> Callable[[], np.ndarray]:
    """Start the CRFs of a batch and return a callable that collects Q (B, C, h, w) float32.

    ``images_uint8``: (B, H, W, 3); ``probs``: (B, C, h, w). Each image is
    downscaled to (h, w) first, as the boundary loss prescribes (Q is the CRF
    of H on the image at score-map size). With a ``pool`` the CRFs run in its
    workers while the caller goes on (the training step overlaps them with the
    expander); without one they run here, on collection.
    """
    images_uint8 = np.asarray(images_uint8)
    probs = np.asarray(probs)
    if images_uint8.ndim != 4 or images_uint8.shape[3] != 3:
        raise ValueError(f"images must be (B, H, W, 3), got shape {images_uint8.shape}")
    if probs.ndim != 4 or probs.shape[0] != images_uint8.shape[0]:
        raise ValueError(
            f"probs must be (B, C, h, w) with B={images_uint8.shape[0]}, got shape {probs.shape}"
        )
    h, w = probs.shape[2:]
    small = [resize_image(im, (h, w)) for im in images_uint8]
    per_image = [np.ascontiguousarray(p, dtype=np.float32) for p in probs]
    if pool is None:
        return lambda: np.stack([dense_crf(im, p, cfg) for im, p in zip(small, per_image)], axis=0)
    futures = pool.submit_many(small, per_image, cfg)
    return lambda: np.stack([f.result() for f in futures], axis=0)


def crf_on_batch(
    images_uint8: np.ndarray,
    probs: np.ndarray,
    cfg: CrfConfig = BOUNDARY_CRF,
    pool: CrfPool | None = None,
) -> np.ndarray:
    """Q for a batch, at the probabilities' resolution (see :func:`submit_batch`)."""
    return submit_batch(images_uint8, probs, cfg, pool)()
