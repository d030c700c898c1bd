"""``saliency-bg``: saliency maps for the background cue, computed or imported.

Computed with a registered unsupervised method (default ``mbd``: MB+, Zhang
et al. ICCV 2015), or imported from a folder of ``<id>.png`` maps (0-255,
255 = salient) made by any other tool: the DSRG/DGCN setting used DRFI maps.
Stored as float16 ``saliency`` (H, W) in [0, 1] at the image's resolution.
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .core import checks
from .core.config import to_jsonable
from .core.cues.saliency import SALIENCY, load_saliency_png
from .core.datasets import DataConfig
from .core.errors import DgcnError
from .core.io.artifacts import ArtifactMeta, ArtifactWriter, fill
from .core.io.images import read_image, resize_map
from .core import options
from .core.options import opt
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class SaliencyConfig:
    out: Path = opt(help="saliency.h5 to write.", required=True)
    data: DataConfig = field(default_factory=DataConfig)
    method: str = opt("mbd", "Saliency method: {choices}.", choices=lambda: SALIENCY.names())
    from_dir: Optional[Path] = opt(None, "Import <id>.png maps (0-255, 255 = salient) from another tool, e.g. DRFI.")
    overwrite: bool = options.overwrite_opt()
    resume: bool = options.resume_opt()
    workers: int = options.workers_opt("computing the maps")

    def __post_init__(self) -> None:
        checks.number("--workers", self.workers, lo=0, integer=True)


def saliency_of(image_path: Path, exif: bool, method: str, png: Optional[Path]) -> dict[str, np.ndarray]:
    """One image's map: computed by ``method``, or ``png`` (another tool's) resized to the image.
    Module-level and fed paths, so a worker process is sent a few names, not the dataset."""
    image = read_image(image_path, exif=exif)
    sal = resize_map(load_saliency_png(png), image.shape[:2]) if png is not None else SALIENCY.get(method)(image)
    return {"saliency": np.clip(sal, 0, 1).astype(np.float16)}


def run(cfg: SaliencyConfig, progress: Optional[Progress] = None) -> StageResult:
    ds = cfg.data.build()
    weak = ds.weak(labels=False)  # images only: saliency needs no labels (VOC's test split has none)
    if cfg.from_dir is None:
        SALIENCY.get(cfg.method)  # an unknown method fails here, before anything is written
    elif not Path(cfg.from_dir).is_dir():
        raise DgcnError(f"--from-dir {cfg.from_dir} is not a folder of <id>.png saliency maps")

    def job(image_id: str) -> tuple:
        png = None
        if cfg.from_dir is not None:
            png = Path(cfg.from_dir) / f"{image_id}.png"
            if not png.is_file():
                raise DgcnError(f"{png} not found: --from-dir must hold <image id>.png for every image of the split")
        return weak.image_paths[image_id], weak.exif, cfg.method, png

    meta = ArtifactMeta(
        kind="saliency", dataset=ds.name, split=ds.split, class_names=ds.class_names,
        config=to_jsonable(cfg),
        extra={"source": f"imported from {cfg.from_dir}" if cfg.from_dir else f"computed: {cfg.method}", "resolution": "image"},
    )
    with ArtifactWriter(cfg.out, meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(weak.ids)) as writer:
        if cfg.workers == 0:
            return wrote(fill(writer, weak.ids, lambda image_id: saliency_of(*job(image_id)), progress))
        # spawned, as the CRF workers: a parent with OpenMP threads is never forked
        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            return wrote(fill(writer, weak.ids, lambda image_id: pool.submit(saliency_of, *job(image_id)), progress,
                              ahead=2 * cfg.workers))
