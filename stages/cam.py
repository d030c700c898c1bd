"""``cam``: train the multi-label classifier on image-level labels, then write CAMs.

CAMs are computed at several scales (default 0.5, 1, 1.5, 2) and their
horizontal flips, passed through ReLU, upsampled bilinearly to the full image
resolution, summed, and max-normalised per class, for the image's present
classes only. Stored as float16 ``cam`` (n_present, H, W) with ``classes``
(n_present,) uint8 class ids, at the image's own resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .core import checks, options
from .core.config import to_jsonable
from .core.datasets import DataConfig, SegDataset, WeakDataset
from .core.device import resolve_device
from .core.errors import DatasetError
from .core.io.artifacts import ArtifactMeta, ArtifactWriter, fill
from .core.io.names import check_name
from .core.nets import Classifier
from .core.options import opt
from .core.predict.classifier import load_classifier, multiscale_cam
from .core.stage import Progress, StageResult, wrote
from .core.train.classifier import ClassifierConfig, classifier_task
from .core.train.fit import OptimConfig, RunConfig, fit, is_main_process

# the classifier's schedule when none is given (the train stage's OptimConfig defaults are the paper's
# segmentation schedule): 5 epochs at lr 0.01, 50 warm-up iterations, random rescale 0.7-1.3
CAM_OPTIM = OptimConfig(epochs=5, lr=0.01, warmup_iters=50, scale_range=(0.7, 1.3))


@dataclass(frozen=True)
class CamConfig:
    """``run.out`` is the stage's folder: the classifier's run in ``classifier/``, then
    ``cams_<split>.h5``."""

    run: RunConfig
    data: DataConfig = field(default_factory=DataConfig)
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    optim: OptimConfig = CAM_OPTIM
    cam_splits: tuple[str, ...] = opt((), "Split(s) to write CAMs for (repeatable). Default: --split.", repeat=True,
                                      aliases=("--cam-split",))
    checkpoint: Optional[Path] = opt(None, "Use this classifier (from a previous `dgcn cam`) instead of training.", exists=True)
    scales: tuple[float, ...] = opt((0.5, 1.0, 1.5, 2.0), "CAM scales (each also flipped).",
                                    parse=lambda t: options.floats(t, "--scales"), show=options.show_floats)

    def __post_init__(self) -> None:
        checks.scales("--scales", self.scales)
        if self.model.freeze_backbone and self.model.weights == "none" and self.checkpoint is None:
            raise checks.OptionError("--freeze-backbone needs pretrained --weights: a random backbone's features teach the class layer nothing")
        for split in self.cam_splits:
            check_name(split, "split name", "--cam-split")


def cams_path(out: Path, split: str) -> Path:
    return Path(out) / f"cams_{split}.h5"


def train_classifier(cfg: CamConfig, progress: Optional[Progress] = None) -> Path:
    """Train on the training split's image-level labels; the final checkpoint's path."""
    return fit(
        run=replace(cfg.run, out=Path(cfg.run.out) / "classifier"), optim=cfg.optim, weak=cfg.data.build().weak(),
        task=classifier_task(cfg.model),
        stage_config={"stage": "cam", "run": cfg.run, "data": cfg.data, "model": cfg.model, "optim": cfg.optim,
                      "cam_splits": cfg.cam_splits, "scales": cfg.scales},
        # recorded for --config; which CAMs are written is not part of the training run
        runtime_keys=("cam_splits", "scales"),
        progress=progress,
    )


def _cam_split(cfg: CamConfig, split: str) -> tuple[SegDataset, WeakDataset]:
    """The split to write CAMs for, with its image-level labels: a CAM is made for each of
    the image's classes, so a split without masks (VOC's test) needs ``--labels-file``."""
    ds = replace(cfg.data, split=split).build()
    try:
        return ds, ds.weak()
    except DatasetError as err:
        raise DatasetError(f"CAMs are made for each image's classes, so --cam-split {split} needs image-level labels: {err}") from None


def write_cams(cfg: CamConfig, model: Classifier, split: str, device: torch.device, progress: Optional[Progress] = None) -> Path:
    ds, weak = _cam_split(cfg, split)
    meta = ArtifactMeta(
        kind="cams", dataset=ds.name, split=split, class_names=ds.class_names,
        config=to_jsonable(cfg),
        extra={"resolution": "image", "scales": list(cfg.scales), "flip": True, "normalisation": "ReLU, sum over scales, per-class max"},
    )

    def compute(image_id: str) -> dict[str, np.ndarray]:
        classes = weak.labels(image_id)
        cam = multiscale_cam(model, weak.load_image(image_id), classes, cfg.scales, device)
        return {"cam": cam.astype(np.float16), "classes": np.asarray(classes, dtype=np.uint8)}

    with ArtifactWriter(cams_path(cfg.run.out, split), meta, overwrite=cfg.run.overwrite, resume=cfg.run.resume, expected=len(weak.ids)) as writer:
        return fill(writer, weak.ids, compute, progress)


def run(cfg: CamConfig, progress: Optional[Progress] = None) -> StageResult:
    """Train (or load) the classifier, then write ``cams_<split>.h5`` for each CAM split
    (the result's ``paths``)."""
    for split in cfg.cam_splits:
        if split != cfg.data.split:
            _cam_split(cfg, split)  # a split without labels fails now, not after training
    checkpoint = cfg.checkpoint if cfg.checkpoint is not None else train_classifier(cfg, progress)
    if not is_main_process():  # under torchrun, rank 0 alone writes the CAMs
        return StageResult((), "")
    device = resolve_device(cfg.run.device)
    model = load_classifier(checkpoint, device)
    cams = [write_cams(cfg, model, split, device, progress) for split in (cfg.cam_splits or (cfg.data.split,))]
    made = "given" if cfg.checkpoint is not None else "trained"
    return wrote(*cams, summary="\n".join([f"classifier ({made}): {checkpoint}", *(f"wrote {p}" for p in cams)]))

