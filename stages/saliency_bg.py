"""``saliency-bg``: saliency maps for the background cue, computed or imported.

Computed with a registered unsupervised method (default ``mbd``: MB+, Zhang
et al. ICCV 2015), or imported from a folder of ``<id>.png`` maps (0-255,
255 = salient) made by any other tool: the DSRG/DGCN setting used DRFI maps.
Stored as float16 ``saliency`` (H, W) in [0, 1] at the image's resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .core.config import DataConfig, to_jsonable
from .core.cues.saliency import SALIENCY, load_saliency_png
from .core.errors import DgcnError
from .core.io.artifacts import ArtifactMeta, ArtifactWriter, fill
from .core.io.images import resize_map
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class SaliencyConfig:
    out: Path
    data: DataConfig = field(default_factory=DataConfig)
    method: str = "mbd"
    from_dir: Optional[Path] = None
    overwrite: bool = False
    resume: bool = False


def run(cfg: SaliencyConfig, progress: Optional[Progress] = None) -> StageResult:
    ds = cfg.data.build()
    weak = ds.weak(labels=False)  # images only: saliency needs no labels (VOC's test split has none)
    if cfg.from_dir is None:
        method = SALIENCY.get(cfg.method)
    elif not Path(cfg.from_dir).is_dir():
        raise DgcnError(f"--from-dir {cfg.from_dir} is not a folder of <id>.png saliency maps")

    def compute(image_id: str) -> dict[str, np.ndarray]:
        image = weak.load_image(image_id)
        if cfg.from_dir is not None:
            path = Path(cfg.from_dir) / f"{image_id}.png"
            if not path.is_file():
                raise DgcnError(f"{path} not found: --from-dir must hold <image id>.png for every image of the split")
            sal = resize_map(load_saliency_png(path), image.shape[:2])
        else:
            sal = method(image)
        return {"saliency": np.clip(sal, 0, 1).astype(np.float16)}

    meta = ArtifactMeta(
        kind="saliency", dataset=ds.name, split=ds.split, class_names=ds.class_names,
        config=to_jsonable(cfg),
        extra={"source": f"imported from {cfg.from_dir}" if cfg.from_dir else f"computed: {cfg.method}", "resolution": "image"},
    )
    with ArtifactWriter(cfg.out, meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(weak.ids)) as writer:
        return wrote(fill(writer, weak.ids, compute, progress))
