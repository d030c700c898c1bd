"""``retrain``: a segmentation network trained on proxy masks as if they were ground truth.

The paper follows DSRG's second step (speedinghzl/DSRG ``training/experiment/seed_mc``), and
so do the defaults here. The masks come from ``--labels`` (any labels artifact) or are made
here from the trained checkpoint (the teacher): its multi-scale test, logits summed over the
scales without flips (``combine="logits"``, ``flip=False``), restricted to the image's
labelled classes (the training split's image-level labels are known), refined by the dense
CRF, argmax. They are written to ``pseudo_labels.h5`` in the run folder (resumable). Then a
network trains on them with cross-entropy (255 ignored) under the same run folder and resume
machinery as ``train``, starting from the teacher's own weights (``init="teacher"``, as
DSRG's retraining starts from its stage-one model) or, with ``init="weights"``, from the
``--weights`` the model options name (ImageNet: the earlier dgcn behaviour).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .core import checks, options
from .core.config import to_jsonable
from .core.cues.crf import CrfConfig, CrfPool
from .core.datasets import DataConfig, WeakDataset
from .core.device import resolve_device
from .core.errors import DgcnError
from .core.io.artifacts import ArtifactMeta, ArtifactWriter, Pending, fill
from .core.io.checkpoint import (
    load_checkpoint,
    load_model_state,
    require_kind,
    weights_fingerprint,
)
from .core.maps import IGNORE, resize_labels
from .core.options import opt
from .core.predict.segmenter import (
    COMBINE,
    TEST_SCALES,
    load_segmenter_checkpoint,
    predict_probs,
)
from .core.stage import Progress, StageResult, wrote
from .core.train.fit import OptimConfig, RunConfig, fit, is_main_process
from .core.train.segmenter import LazyLabelMaps, ModelConfig, segmenter_task

#: DSRG's retraining (speedinghzl/DSRG ``training/experiment/seed_mc/solver-f.prototxt``): lr 1e-3,
#: Caffe's poly policy (power 0.9), no warm-up, 20,000 iterations at batch 10, i.e. 18.9 epochs
#: of VOC's 10,582 train_aug images (19 here), head at 10x as in stage one.
RETRAIN_OPTIM = OptimConfig(epochs=19, batch_size=10, lr=1e-3, lr_schedule="poly", poly_power=0.9, warmup_iters=0)


@dataclass(frozen=True)
class RetrainConfig:
    run: RunConfig
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = RETRAIN_OPTIM
    checkpoint: Optional[Path] = opt(None, "Label the split with this trained model (multi-scale + CRF); training starts "
                                           "from its weights (--init teacher).", exists=True)
    labels: Optional[Path] = opt(None, "Or train on these proxy labels (labels.h5).", exists=True)
    scales: tuple[float, ...] = opt(TEST_SCALES, "Scales for labelling.", parse=lambda t: options.floats(t, "--scales"),
                                    show=options.show_floats)
    # DSRG's labelling: the published multi-scale test (logits summed, no flip), then the CRF
    combine: str = opt("logits", "Labelling: logits summed over the scales (the published test) or softmax averaged.")
    flip: bool = opt(False, "Also the mirror of each scale when labelling (DSRG: no).")
    crf: bool = opt(True, "Dense CRF on the pseudo labels.")
    # "teacher": start from the checkpoint's weights (DSRG); "weights": from --weights (ImageNet)
    init: str = opt("teacher", "Start from the --checkpoint's weights (teacher: DSRG's retraining) or from --weights "
                               "(weights: e.g. ImageNet).")
    crf_workers: int = options.crf_workers_opt(1, "the network labels on")


    def __post_init__(self) -> None:
        checks.scales("--scales", self.scales)
        if self.combine not in COMBINE:
            raise DgcnError(f"--combine must be {' or '.join(COMBINE)}, got {self.combine!r}")
        if self.init not in INITS:
            raise DgcnError(f"--init must be {' or '.join(INITS)}, got {self.init!r}")
        checks.number("--crf-workers", self.crf_workers, lo=0, integer=True)
        if self.init == "teacher" and self.checkpoint is None:
            raise DgcnError("--init teacher starts from the checkpoint that labels the split: with --labels, "
                            "give --checkpoint too or use --init weights")


INITS = ("teacher", "weights")


def pseudo_labels_path(cfg: RetrainConfig) -> Path:
    return Path(cfg.run.out) / "pseudo_labels.h5"


def make_pseudo_labels(cfg: RetrainConfig, weak: WeakDataset, progress=None) -> Path:
    """Label the split with the teacher. The CRF runs over the image's own classes (background
    and its image-level labels) only: the absent classes' probabilities are zero, which the
    CRF cannot raise past a present class, so the argmax is theirs alone, at a fraction of the
    cost (81 COCO classes against the few present). The CRFs run in ``crf_workers`` processes
    while the network labels the next images; labels are written in the split's order."""
    device = resolve_device(cfg.run.device)
    seg = load_segmenter_checkpoint(cfg.checkpoint, device)
    seg.check_classes(weak.class_names, f"{weak.name}/{weak.split}")
    crf = CrfConfig()

    def compute(image_id: str, pool: CrfPool):
        image = weak.load_image(image_id)
        probs = predict_probs(seg.model, image, cfg.scales, cfg.flip, device, combine=cfg.combine)
        present = np.array(sorted({0, *weak.labels(image_id)}), dtype=np.uint8)
        probs = probs[present]
        probs /= probs.sum(axis=0, keepdims=True).clip(min=1e-8)

        def to_label(q: np.ndarray) -> dict[str, np.ndarray]:
            return {"label": present[q.argmax(axis=0)]}

        return Pending(pool.submit(image, probs, crf), to_label) if cfg.crf else to_label(probs)

    meta = ArtifactMeta(
        kind="labels", dataset=weak.name, split=weak.split, class_names=weak.class_names,
        config=to_jsonable(cfg),
        extra={"source": f"predicted by {cfg.checkpoint}", "scales": list(cfg.scales), "combine": cfg.combine, "flip": cfg.flip, "crf": cfg.crf,
               "restricted_to_image_labels": True, "model": seg.provenance},
    )
    workers = cfg.crf_workers if cfg.crf else 0
    with ArtifactWriter(pseudo_labels_path(cfg), meta, overwrite=cfg.run.overwrite and not cfg.run.resume, resume=cfg.run.resume, expected=len(weak.ids)) as w, \
            CrfPool(workers) as pool:
        # enough in flight to keep every worker busy while the network labels the next image
        return fill(w, weak.ids, lambda image_id: compute(image_id, pool), progress, ahead=2 * workers)


def _ce_loss(model, batch: dict, device: torch.device, iteration: int = 0):
    logits = model(batch["image"].to(device, non_blocking=True)).float()
    target = resize_labels(batch["map0"].to(device), tuple(logits.shape[-2:]))
    if (target != IGNORE).any():
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE)
    else:  # a crop with no labelled pixel: a zero that still has a graph
        loss = logits.sum() * 0.0
    return loss, {}


def teacher_start(cfg: RetrainConfig) -> tuple[ModelConfig, Callable[[int], torch.nn.Module], str]:
    """(the network's config, its builder, the starting weights' fingerprint) for ``init="teacher"``:
    the teacher's architecture, BatchNorm freezing as the teacher trained, its weights (the
    averaged ones where it kept an average: what labelled the split)."""
    state = load_checkpoint(cfg.checkpoint)
    require_kind(state, "segmenter", cfg.checkpoint)
    arch = state["model_config"]
    mismatch = [f"{name} {getattr(cfg.model, name)} (teacher: {arch.get(name)})" for name in ("backbone", "head")
                if arch.get(name) is not None and getattr(cfg.model, name) != arch.get(name)]
    if mismatch:
        raise DgcnError(f"--init teacher continues the teacher's network, but this run asks for {', '.join(mismatch)}: "
                        "give the teacher's options or use --init weights")
    taught = (state.get("config") or {}).get("model") or {}
    frozen = cfg.model.freeze_bn if cfg.model.freeze_bn is not None else ModelConfig(
        backbone=str(arch["backbone"]), weights=str(taught.get("weights", "imagenet")), freeze_bn=taught.get("freeze_bn")).bn_frozen
    model = ModelConfig(backbone=str(arch["backbone"]), weights="none", graph_layers=tuple(arch["graph_layers"]),
                        head=str(arch.get("head", cfg.model.head)), freeze_bn=frozen)

    def build(num_classes: int) -> torch.nn.Module:
        net = model.build(num_classes)
        load_model_state(net, state["model"], cfg.checkpoint)
        return net

    return model, build, weights_fingerprint(state["model"])


def _labelled_once(cfg: RetrainConfig, weak: WeakDataset, progress) -> Path:
    """The pseudo labels, made by one process. Under torchrun rank 0 labels and then leaves a
    marker named by the launch's run id (a marker of an earlier launch, or a labels file it
    left, cannot be mistaken for this one's); the other ranks wait for it (torchrun stops
    them if rank 0 fails)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or run_id is None:
        return make_pseudo_labels(cfg, weak, progress)
    marker = Path(cfg.run.out) / f".pseudo_labels_ready.{run_id}"
    if is_main_process():
        path = make_pseudo_labels(cfg, weak, progress)
        marker.touch()
        return path
    while not marker.exists():
        time.sleep(1.0)
    return pseudo_labels_path(cfg)


def run(cfg: RetrainConfig, progress: Optional[Progress] = None) -> StageResult:
    if (cfg.checkpoint is None) and (cfg.labels is None):
        raise DgcnError("retrain needs --checkpoint (label the split with it) or --labels (a labels.h5)")
    if cfg.checkpoint is not None and cfg.labels is not None and cfg.init != "teacher":
        raise DgcnError("--labels with --checkpoint: the checkpoint is only the starting point (--init teacher)")
    weak = cfg.data.build().weak()
    start = teacher_start(cfg) if cfg.init == "teacher" else None
    labels = cfg.labels if cfg.labels is not None else _labelled_once(cfg, weak, progress)
    maps = LazyLabelMaps(labels, ("labels", "predictions", "seeds"), weak.class_names, weak.ids)
    task = segmenter_task(cfg.model, _ce_loss, maps)
    started = {}
    if start is not None:
        model, build, fingerprint = start
        task = dataclasses.replace(task, build=build)
        # the network the run starts from: another teacher is another run
        started = {"model": model, "init_fingerprint": fingerprint}
    final = fit(
        run=cfg.run, optim=cfg.optim, weak=weak, task=task,
        # the labels' content fingerprint: training on regenerated labels is another run
        stage_config={"stage": "retrain", **cfg.__dict__, **started, "labels_fingerprint": maps.fingerprint, "teacher": maps.made_by},
        progress=progress,
    )
    if is_main_process():
        for marker in Path(cfg.run.out).glob(".pseudo_labels_ready.*"):
            marker.unlink(missing_ok=True)
    return wrote(final) if cfg.labels is not None else wrote(final, labels)
