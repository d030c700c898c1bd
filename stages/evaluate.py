"""``evaluate``: any label artifact, CAMs, or a folder of PNG masks against ground truth.

Protocol: every image of the split that has a ground-truth mask; an artifact
item of another size than its image is refused (it was made from other images);
a PNG of another size is resized to the mask with nearest-neighbour (the count
of such images is recorded); ground-truth 255 is ignored; a class
absent from both ground truth and prediction over the whole split is left out
of the mean. CAMs become labels by argmax over (background threshold, CAM of
each present class).

The JSON also records the ``environment`` the evaluation ran in and the one the evaluated
artifact was made in (``source_environment``; absent for PNG folders and files made before
environments were recorded).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .core import checks, options, provenance
from .core.config import to_jsonable
from .core.datasets import DataConfig
from .core.errors import DatasetError, DgcnError
from .core.eval.changes import LabelChanges
from .core.eval.metrics import ConfusionMatrix, SegMetrics
from .core.io.artifacts import LABEL_KINDS, ArtifactReader
from .core.io.files import write_json_atomic
from .core.io.images import read_mask
from .core.io.images import resize_label as resize_nearest
from .core.maps import IGNORE
from .core.options import opt
from .core.stage import Progress, StageResult, wrote

SWEEP_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


@dataclass(frozen=True)
class EvaluateConfig:
    source: Path = opt(help="A seeds/labels/predictions/cams artifact (.h5) or a folder of <id>.png masks.",
                       required=True, positional=True, exists=True, metavar="ARTIFACT")
    data: DataConfig = field(default_factory=lambda: DataConfig(split="val"))
    cam_bg_thresh: float = opt(0.15, "For CAMs: background score in the argmax.")
    sweep: bool = opt(False, "For CAMs: try thresholds 0.05..0.95 and report the best.")
    json_out: Optional[Path] = options.json_out_opt("everything")
    # an earlier label artifact of the same images (the seeds): also score what the source
    # changed of it (``eval.changes``)
    relative_to: Optional[Path] = opt(None, "An earlier labels/seeds artifact of the same images: also score what "
                                            "ARTIFACT changed of it (pixels added and their precision per class; wrong "
                                            "reference pixels corrected or kept).", exists=True)

    def __post_init__(self) -> None:
        checks.number("--cam-bg-thresh", self.cam_bg_thresh, lo=0, hi=1)


@dataclass
class EvalReport:
    metrics: SegMetrics
    protocol: dict
    sweep: list[tuple[float, float]] = field(default_factory=list)
    environment: Optional[dict] = None  # where this evaluation ran
    source_environment: Optional[dict] = None  # where the evaluated artifact was made
    changes: Optional[dict] = None  # LabelChanges.results against ``relative_to``

    def to_dict(self) -> dict:
        out = {"protocol": self.protocol, **self.metrics.to_dict()}
        if self.changes is not None:
            out["changes"] = self.changes
        if self.sweep:
            out["sweep"] = [{"cam_bg_thresh": t, "miou": round(m, 6)} for t, m in self.sweep]
        if self.environment is not None:
            out["environment"] = self.environment
        if self.source_environment is not None:
            out["source_environment"] = self.source_environment
        return out


def cam_to_label(cam: np.ndarray, classes: np.ndarray, bg_thresh: float) -> np.ndarray:
    """Argmax over (a constant background score, the CAM of each present class)."""
    h, w = cam.shape[-2:]
    if len(classes) == 0:
        return np.zeros((h, w), dtype=np.uint8)
    scores = np.concatenate([np.full((1, h, w), bg_thresh, np.float32), cam.astype(np.float32)])
    lut = np.concatenate([[0], classes]).astype(np.uint8)
    return lut[scores.argmax(axis=0)]


class _PngSource:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kind = "png-folder"
        self.fingerprint = ""

    def label(self, image_id: str) -> np.ndarray:
        path = self.folder / f"{image_id}.png"
        if not path.is_file():
            raise DgcnError(f"{path} not found: the PNG folder must hold <image id>.png for every image of the split")
        return read_mask(path)


def _made_by(kind: str, made_with: dict) -> dict:
    """The stage and, for network-made artifacts, the network's run (stage, expander, seed,
    teacher) that the source artifact records: what ``dgcn report`` names its rows by."""
    made_by = {"kind": kind}
    model = made_with.get("model")
    if isinstance(model, dict):
        made_by["model"] = model
    if kind == "labels" and "expander" in made_with:
        made_by["expander"] = made_with["expander"]
        made_by["expander_options"] = made_with.get("expander_options") or {}
    return made_by


def _protocol(cfg: EvaluateConfig, ds, kind: str, fingerprint: str, made_with: dict, resized: int) -> dict:
    """How the numbers were measured, written beside them."""
    protocol = {
        "dataset": ds.name,
        "split": ds.split,
        "images": len(ds.ids),
        "source": str(cfg.source),
        "source_kind": kind,
        "source_fingerprint": fingerprint,
        "resizing": f"nearest-neighbour to the ground-truth size ({resized} of {len(ds.ids)} images resized)",
        "ignore_label": IGNORE,
        "unlabelled_predictions": f"count as misses ({IGNORE} in seeds/labels)",
        "made_with": made_with,
        "made_by": _made_by(kind, made_with),
    }
    if kind in ("predictions", "labels") and "scales" in made_with:  # a network's multi-scale test (retrain's labels too)
        summed = ", logits summed" if made_with.get("combine") == "logits" else ""
        protocol["prediction_protocol"] = (
            f"scales {','.join(str(s) for s in made_with['scales'])}{summed}"
            f"{' + flip' if made_with.get('flip') else ''}, CRF {'on' if made_with.get('crf') else 'off'}"
        )
    return protocol


def _open_reference(cfg: EvaluateConfig, kind: str, ds, names) -> tuple[Optional[ArtifactReader], Optional[LabelChanges]]:
    """The ``relative_to`` artifact, opened and checked against the split, and its counter."""
    if cfg.relative_to is None:
        return None, None
    if kind not in LABEL_KINDS:
        raise DgcnError(f"--relative-to compares two label maps; {cfg.source} holds {kind}")
    reference = ArtifactReader(cfg.relative_to, kind=LABEL_KINDS, class_names=names)
    try:
        reference.require_ids(ds.ids)
    except BaseException:
        reference.close()
        raise
    return reference, LabelChanges(len(names))


def run(cfg: EvaluateConfig, progress: Optional[Progress] = None) -> StageResult:
    """Score the source against the split's masks; ``details`` is the ``EvalReport``."""
    ds = cfg.data.build()
    if not ds.has_masks():
        missing = ds.missing_masks()
        if len(missing) == len(ds.ids):
            raise DatasetError(f"{ds.name}/{ds.split} has no ground-truth masks to evaluate against "
                               "(a test split: score it with `dgcn infer --voc-results DIR` and the evaluation server)")
        raise DatasetError(f"{ds.name}/{ds.split}: {len(missing)} of {len(ds.ids)} images have no ground-truth mask "
                           f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); evaluation needs every one")
    names = ds.class_names
    reader: Optional[ArtifactReader] = None
    if Path(cfg.source).is_dir():
        png = _PngSource(Path(cfg.source))
        kind, fingerprint, made_with = png.kind, "", {}
        source_environment = None
    else:
        reader = ArtifactReader(cfg.source, kind=(*LABEL_KINDS, "cams"), class_names=names)
        reader.require_ids(ds.ids)
        kind, fingerprint = reader.kind, reader.fingerprint
        made_with = reader.extra
        source_environment = reader.environment
    thresholds = SWEEP_THRESHOLDS if (cfg.sweep and kind == "cams") else (cfg.cam_bg_thresh,)
    mats = [ConfusionMatrix(len(names)) for _ in thresholds]
    resized = 0
    reference, changes = _open_reference(cfg, kind, ds, names)
    try:
        for n, image_id in enumerate(ds.ids):
            gt = ds.load_mask(image_id)
            if reader is None:
                labels = [png.label(image_id)]
            elif kind == "cams":
                cam, classes = reader.cam(image_id, gt.shape)
                labels = [cam_to_label(cam, classes, t) for t in thresholds]
            else:
                labels = [reader.label(image_id, gt.shape)]
            if labels[0].shape != gt.shape:
                resized += 1
            for mat, lab in zip(mats, labels):
                mat.update(gt, resize_nearest(lab, gt.shape))
            if reference is not None:
                changes.update(gt, reference.label(image_id, gt.shape), labels[0])
            if progress:
                progress(n + 1, len(ds.ids))
    finally:
        if reader is not None:
            reader.close()
        if reference is not None:
            reference.close()
    results = [m.results(names) for m in mats]
    mious = [r.miou for r in results]
    best = int(np.nanargmax(mious)) if np.isfinite(mious).any() else 0
    protocol = _protocol(cfg, ds, kind, fingerprint, made_with, resized)
    if reference is not None:
        protocol["relative_to"] = {"source": str(cfg.relative_to), "kind": reference.kind,
                                   "fingerprint": reference.fingerprint}
    if kind == "cams":
        protocol["cam_bg_thresh"] = thresholds[best]
        protocol["cam_bg_thresh_selected_by_sweep"] = bool(cfg.sweep)
    report = EvalReport(
        metrics=results[best],
        protocol=protocol,
        sweep=[(t, r.miou) for t, r in zip(thresholds, results)] if len(thresholds) > 1 else [],
        environment=provenance.environment("cpu"),  # counting pixels: no network, no GPU
        source_environment=source_environment,
        changes=changes.results(names) if changes is not None else None,
    )
    if cfg.json_out is None:
        return StageResult((), "", details=report)
    write_json_atomic(Path(cfg.json_out), {**report.to_dict(), "config": to_jsonable(cfg)}, indent=2)
    return wrote(Path(cfg.json_out), details=report)
