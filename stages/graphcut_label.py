"""``graphcut-label``: proxy labels from a trained segmentation network, seeds and an expander.

For each image: one forward pass at the image's own size gives the
probabilities and node features at the score-map size; the seeds are resized
to that size (nearest), the chosen expander (graph cut by default) produces
the supervision a training step would get for the whole image. It is written at
the image's resolution: the seeds as given, and what the expander added or took
away upsampled from the score map (``to_image_size``; 255 = no label), so expanders
are compared on what they find, not on the score map's resolution, without
retraining. An expander that grows on a CRF refinement of the probabilities (DSRG)
gets the CRF it names (``refine_crf``: DSRG's own, U = -p, or with ``refine_unary=neglog``
the boundary loss's), on the image at score-map size as in training; where the graph
cut's multi-hot supervision gives a pixel two classes, the more probable one is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from .core import options
from .core.config import to_jsonable
from .core.cues.crf import crf_on_batch
from .core.datasets import DataConfig
from .core.device import autocast, resolve_device
from .core.expanders import (
    EXPANDERS,
    build_expander,
    check_expander_options,
    to_image_size,
)
from .core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter, fill
from .core.maps import present_matrix, resize_labels
from .core.nets.inputs import to_tensor
from .core.options import opt
from .core.predict.segmenter import load_segmenter_checkpoint
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class GraphcutLabelConfig:
    checkpoint: Path = opt(help="Segmentation checkpoint from `dgcn train`.", required=True, exists=True)
    seeds: Path = opt(help="seeds.h5 for the same split.", required=True, exists=True)
    out: Path = opt(help="labels.h5 to write.", required=True)
    data: DataConfig = field(default_factory=DataConfig)
    expander: str = opt("graphcut", "Seed expander: {choices}.", choices=lambda: EXPANDERS.names())
    expander_options: Mapping[str, Any] = opt(
        help="Expander option KEY=VALUE (repeatable), e.g. k=9 theta=0.7 c1=10 log_base=10 workers=2.",
        default_factory=dict, repeat=True, aliases=("--expander-opt",),
        parse=lambda items: options.key_values(items, "--expander-options"))
    device: str = options.device_opt()
    overwrite: bool = options.overwrite_opt()
    resume: bool = options.resume_opt()

    def __post_init__(self) -> None:
        check_expander_options(self.expander, self.expander_options)


def run(cfg: GraphcutLabelConfig, progress: Optional[Progress] = None) -> StageResult:
    ds = cfg.data.build()
    weak = ds.weak()
    device = resolve_device(cfg.device)
    seg = load_segmenter_checkpoint(cfg.checkpoint, device)
    seg.check_classes(ds.class_names, f"{ds.name}/{ds.split}")
    model = seg.model
    seeds = ArtifactReader(cfg.seeds, kind="seeds", class_names=ds.class_names)
    seeds.require_ids(ds.ids)
    expander = build_expander(cfg.expander, **dict(cfg.expander_options))

    @torch.no_grad()
    def compute(image_id: str) -> dict[str, np.ndarray]:
        image = weak.load_image(image_id)
        with autocast(device):
            logits, feats = model(to_tensor(image)[None].to(device), return_features=True)
        probs = logits.float().softmax(1)
        h, w = probs.shape[-2:]
        if expander.refine_crf is not None:
            probs = torch.from_numpy(crf_on_batch(image[None], probs.cpu().numpy(), expander.refine_crf)).to(device)
        # the seeds and image labels as the training step hands them to the expander
        seed_full = torch.from_numpy(seeds.label(image_id, image.shape).astype(np.int64))[None].to(device)
        seed = resize_labels(seed_full, (h, w))
        present = present_matrix(torch.from_numpy(weak.label_vector(image_id))[None].to(device))
        sup = expander(feats if expander.needs_features else None, probs, seed, present)
        return {"label": to_image_size(sup, seed, seed_full, probs)[0].to(torch.uint8).cpu().numpy()}

    meta = ArtifactMeta(
        kind="labels", dataset=ds.name, split=ds.split, class_names=ds.class_names,
        config=to_jsonable(cfg), inputs={"seeds": seeds.fingerprint},
        extra={"model": seg.provenance, "expander": cfg.expander, "expander_options": dict(cfg.expander_options), "expander_config": expander.config.to_dict(), "resolution": "image (seeds as given; expander changes upsampled from the score map)"},
    )
    try:
        with ArtifactWriter(cfg.out, meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(ds.ids)) as writer:
            return wrote(fill(writer, ds.ids, compute, progress))
    finally:
        expander.close()
        seeds.close()
