"""``train``: the DGCN training loop with dynamic seed-expansion supervision.

Every iteration: forward; the expander (graph cut by default) on detached node
features and probabilities turns the seeds into the supervision of this step;
balanced seeding loss on it, plus the boundary loss KL(Q||H) with Q the dense
CRF of H on the image downscaled to the score-map size. The CRF runs in worker
processes, submitted before the expander runs so the two overlap. An expander
that grows on a CRF refinement of the probabilities (DSRG: its own CRF, U = -p)
names that CRF (``refine_crf``); it runs in the same workers, ahead of the boundary
loss's, and the expander waits for it. Where it is the boundary loss's own CRF
(``dsrg`` with ``refine_unary=neglog``) Q is handed over and no CRF runs twice.

Only image-level labels and seeds reach this stage: the dataset is handed over
as a ``WeakDataset`` (image paths and image-level labels), never with masks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .core import checks, options
from .core.cues.crf import BOUNDARY_CRF, CrfPool, submit_batch
from .core.datasets import DataConfig
from .core.errors import DgcnError
from .core.expanders import EXPANDERS, build_expander, check_expander_options
from .core.maps import IGNORE, present_matrix, resize_labels
from .core.options import opt
from .core.stage import Progress, StageResult, wrote
from .core.train.fit import OptimConfig, RunConfig, fit
from .core.train.losses import (
    RATIO_CLIP,
    balanced_seed_loss,
    boundary_loss,
    supervision_stats,
)
from .core.train.segmenter import LazyLabelMaps, ModelConfig, segmenter_task


@dataclass(frozen=True)
class TrainConfig:
    run: RunConfig
    seeds: Path = opt(help="seeds.h5 from `dgcn seeds` (needed unless --config).", required=True, exists=True)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    expander: str = opt("graphcut", "Seed expander: {choices}.", choices=lambda: EXPANDERS.names())
    expander_options: Mapping[str, Any] = opt(
        help="Expander option KEY=VALUE (repeatable), e.g. k=9 theta=0.7 c1=10 log_base=10 workers=2.",
        default_factory=dict, repeat=True, aliases=("--expander-opt",), tied_to="expander",
        parse=lambda items: options.key_values(items, "--expander-options"))
    boundary_loss: str = opt("crf", "crf (KL to the dense CRF of H) or none.")
    boundary_weight: float = opt(1.0, "Weight of the boundary loss against the seeding loss.")
    # DSRG's clip of Q/H in the boundary loss (the published code's); None: plain KL
    boundary_clip: Optional[tuple[float, float]] = opt(
        RATIO_CLIP, "Clip Q/H into LO,HI in the boundary loss (DSRG's and the published code's 0.05,20); none: plain KL.",
        parse=lambda t: None if str(t).strip().lower() == "none" else options.float_range(t, "--boundary-clip"),
        show=lambda v: "none" if v is None else options.show_floats(v))
    # seeding-loss sums divided by each image's own counts (the published code), or pooled
    seed_loss_per_image: bool = opt(True, "Divide each image's seeding-loss sums by its own counts, then average over "
                                          "the batch (the published code); off: pooled over the batch.",
                                    negative="--seed-loss-pooled")
    crf_workers: int = options.crf_workers_opt(1)
    # iterations trained on the seeds alone before the expander starts (0: from the first
    # step, as the paper): an expander that trusts H > theta from the start also trusts a
    # network that has seen ten batches
    expand_after: int = opt(0, "Train on the seeds alone for this many iterations before the expander starts "
                               "(0: from the first step, the paper).")

    def __post_init__(self) -> None:
        if self.boundary_loss not in ("crf", "none"):
            raise DgcnError(f"--boundary-loss must be crf or none, got {self.boundary_loss!r}")
        if self.boundary_clip is not None and not 0 < self.boundary_clip[0] < 1 < self.boundary_clip[1]:
            raise DgcnError(f"--boundary-clip must be LO,HI with 0 < LO < 1 < HI, got {self.boundary_clip}")
        check_expander_options(self.expander, self.expander_options)
        checks.number("--boundary-weight", self.boundary_weight, lo=0)
        checks.number("--expand-after", self.expand_after, lo=0, integer=True)
        checks.number("--crf-workers", self.crf_workers, lo=0, integer=True)


def make_loss(cfg: TrainConfig, expander, pool: Optional[CrfPool]):
    """The training step's loss: (model, batch, device, iteration) -> (loss, stats). ``pool``
    runs the CRFs; it is needed when the boundary loss is on or the expander grows on a CRF
    refinement (``expander.refine_crf``). Before ``cfg.expand_after`` iterations the seeds
    are the supervision."""
    boundary = BOUNDARY_CRF if cfg.boundary_loss == "crf" else None
    if (boundary is not None or expander.refine_crf is not None) and pool is None:
        raise ValueError("this loss needs a CRF pool")
    seeds_only = build_expander("none")

    def loss_fn(model, batch: dict, device: torch.device, iteration: int = 0):
        active = expander if iteration >= cfg.expand_after else seeds_only
        refine_crf = active.refine_crf
        x = batch["image"].to(device, non_blocking=True)
        logits, feats = model(x, return_features=True)
        logits = logits.float()
        probs = logits.detach().softmax(1)
        refined, collect, q = None, None, None
        if refine_crf is not None or boundary is not None:
            raw, probs_np = batch["raw"].numpy(), probs.cpu().numpy()
            # the expander's own CRF first: the workers take it before the boundary loss's,
            # which then runs while the expander grows
            if refine_crf is not None and refine_crf != boundary:
                refined = submit_batch(raw, probs_np, refine_crf, pool)
            if boundary is not None:
                collect = submit_batch(raw, probs_np, boundary, pool)
        if refine_crf is not None:
            if refined is None:  # the boundary loss's own CRF: its Q serves both
                q = torch.from_numpy(collect()).to(device)
                expander_probs = q
            else:
                expander_probs = torch.from_numpy(refined()).to(device)
        else:
            expander_probs = probs
        seeds = resize_labels(batch["map0"].to(device), tuple(logits.shape[-2:]))
        present = present_matrix(batch["labels"].to(device))
        # the expander itself detaches and casts to float32 (it runs outside autocast)
        supervision = active(feats if active.needs_features else None, expander_probs, seeds, present)
        seed_loss = balanced_seed_loss(logits, supervision, per_image=cfg.seed_loss_per_image)
        labelled = supervision.any(1) if supervision.dim() == 4 else supervision != IGNORE
        stats = {"seed_loss": float(seed_loss.detach()), "supervised": float(labelled.float().mean()),
                 **supervision_stats(logits, supervision, seeds, cfg.seed_loss_per_image)}
        loss = seed_loss
        if boundary is not None:
            q = q if q is not None else torch.from_numpy(collect()).to(device)
            b_loss = boundary_loss(logits, q, cfg.boundary_clip)
            stats["boundary_loss"] = float(b_loss.detach())
            loss = loss + cfg.boundary_weight * b_loss
        return loss, stats

    return loss_fn


def run(cfg: TrainConfig, progress: Optional[Progress] = None) -> StageResult:
    weak = cfg.data.build().weak()
    maps = LazyLabelMaps(cfg.seeds, ("seeds",), weak.class_names, weak.ids)
    expander = build_expander(cfg.expander, **dict(cfg.expander_options))
    crf = cfg.boundary_loss == "crf" or expander.refine_crf is not None
    # the pool's own configuration is only a default: each batch is submitted with its CRF's
    pool = CrfPool(cfg.crf_workers, BOUNDARY_CRF) if crf else None
    try:
        return wrote(fit(
            run=cfg.run, optim=cfg.optim, weak=weak,
            task=segmenter_task(cfg.model, make_loss(cfg, expander, pool), maps, keep_image=crf),
            # the seeds' content fingerprint: resuming on regenerated seeds is another run
            stage_config={"stage": "train", **cfg.__dict__, "seeds_fingerprint": maps.fingerprint},
            progress=progress,
        ))
    finally:
        expander.close()
        if pool is not None:
            pool.close()
