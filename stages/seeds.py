"""``seeds``: seed maps (class id, 255 unlabelled) for the training split.

Made from ``cams.h5`` and ``saliency.h5`` (or ``--bg-source cam`` for users
without saliency), or imported from other tools: DSRG's
``localization_cues-sal.pickle`` (what the published DGCN code reads; stored
on its 41x41 grid) and IRN-style per-image ``<id>.npy`` CAM dictionaries
(``keys``: 0-based foreground classes, ``high_res``: (n, H, W) CAMs). Both are
pickles, read with a restricted unpickler that runs no code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .core.config import DataConfig, to_jsonable
from .core.cues.seeding import FusionConfig, cues_to_seeds, fuse_seeds
from .core.errors import DgcnError
from .core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter, fill
from .core.io.safe_pickle import safe_load
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class SeedsConfig:
    out: Path
    data: DataConfig = field(default_factory=DataConfig)
    cams: Optional[Path] = None
    saliency: Optional[Path] = None
    fusion: FusionConfig = field(default_factory=FusionConfig)
    from_dsrg: Optional[Path] = None
    from_irn: Optional[Path] = None
    overwrite: bool = False
    resume: bool = False


def _dsrg_source(path: Path, num_classes: int) -> Callable[[str], np.ndarray]:
    cues = safe_load(path)
    if not isinstance(cues, dict):
        raise DgcnError(f"{path}: expected a dict with '<id>_labels' and '<id>_cues' entries")

    def compute(image_id: str) -> np.ndarray:
        try:
            labels, triplets = cues[f"{image_id}_labels"], cues[f"{image_id}_cues"]
        except KeyError:
            raise DgcnError(f"{path} has no cues for image {image_id} ('{image_id}_cues')") from None
        return cues_to_seeds(np.asarray(triplets), np.asarray(labels), num_classes)

    return compute


def _irn_cams(folder: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    data = safe_load(Path(folder) / f"{image_id}.npy")
    if not isinstance(data, dict) or "keys" not in data or "high_res" not in data:
        raise DgcnError(f"{folder}/{image_id}.npy: expected an IRN CAM dict with 'keys' and 'high_res'")
    return np.asarray(data["high_res"], dtype=np.float32), np.asarray(data["keys"]).astype(np.int64) + 1


def run(cfg: SeedsConfig, progress: Optional[Progress] = None) -> StageResult:
    given = [n for n, v in (("--from-dsrg", cfg.from_dsrg), ("--from-irn", cfg.from_irn), ("--cams", cfg.cams)) if v is not None]
    if len(given) > 1:
        raise DgcnError(f"give one seed source, not {' and '.join(given)}")
    if cfg.from_dsrg is not None and cfg.saliency is not None:
        raise DgcnError("--from-dsrg imports finished seeds: --saliency would be ignored, leave it out")
    ds = cfg.data.build()
    names = ds.class_names
    readers: list[ArtifactReader] = []
    inputs: dict[str, str] = {}

    def open_input(path: Path, kind: str) -> ArtifactReader:
        """An input artifact covering the split; closed at the end, fingerprinted into the output."""
        reader = ArtifactReader(path, kind=kind, class_names=names)
        readers.append(reader)
        reader.require_ids(ds.ids)
        inputs[kind] = reader.fingerprint
        return reader

    try:
        if cfg.from_dsrg is not None:
            dsrg = _dsrg_source(cfg.from_dsrg, len(names))
            compute = lambda i: {"label": dsrg(i)}  # noqa: E731
            source = f"DSRG cues {cfg.from_dsrg}"
        else:
            sal = None
            if cfg.fusion.bg_source == "saliency":
                if cfg.saliency is None:
                    raise DgcnError("--saliency FILE is needed for saliency background seeds (or use --bg-source cam)")
                sal = open_input(cfg.saliency, "saliency")
            if cfg.from_irn is not None:
                get_cams = lambda i: _irn_cams(cfg.from_irn, i)  # noqa: E731
                source = f"IRN CAMs {cfg.from_irn}"
            else:
                if cfg.cams is None:
                    raise DgcnError("--cams FILE is needed (from `dgcn cam`), or import seeds with --from-dsrg / --from-irn")
                cams = open_input(cfg.cams, "cams")
                get_cams = cams.cam
                source = f"CAMs {cfg.cams}"

            def compute(image_id: str) -> dict[str, np.ndarray]:
                cam, classes = get_cams(image_id)
                s = sal.saliency(image_id) if sal is not None else None
                return {"label": fuse_seeds(cam, classes, s, cfg.fusion)}

        meta = ArtifactMeta(
            kind="seeds", dataset=ds.name, split=ds.split, class_names=names,
            config=to_jsonable(cfg), inputs=inputs, extra={"source": source},
        )
        with ArtifactWriter(cfg.out, meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(ds.ids)) as writer:
            return wrote(fill(writer, ds.ids, compute, progress))
    finally:
        for r in readers:
            r.close()
