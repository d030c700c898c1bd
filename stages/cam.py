"""``cam``: train the multi-label classifier on image-level labels, then write CAMs.

CAMs are computed at several scales (default 0.5, 1, 1.5, 2) and their
horizontal flips, passed through ReLU, upsampled bilinearly to the full image
resolution, summed, and max-normalised per class, for the image's present
classes only. Stored as float16 ``cam`` (n_present, H, W) with ``classes``
(n_present,) uint8 class ids, at the image's own resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .core import checks
from .core.config import RUNTIME_KEYS, DataConfig, to_jsonable
from .core.datasets import WeakDataset
from .core.device import place, resolve_device, seed_everything
from .core.errors import DgcnError
from .core.io.artifacts import ArtifactMeta, ArtifactWriter, fill
from .core.io.checkpoint import load_checkpoint, load_model_state, require_kind
from .core.io.names import check_name
from .core.maps import resize_scores
from .core.nets import Classifier, build_classifier
from .core.nets.inputs import to_tensor
from .core.train.batches import WeakTrainSet, epoch_loader
from .core.train.loop import LoopConfig, RunFolder, Schedule, config_fingerprint, prepare_run, run_loop, warmup_length


@dataclass(frozen=True)
class CamConfig:
    out: Path
    data: DataConfig = field(default_factory=DataConfig)
    cam_splits: tuple[str, ...] = ()  # splits to write CAMs for; default: the training split
    backbone: str = "tiny"
    weights: str = "none"
    checkpoint: Optional[Path] = None  # skip training, use this classifier
    epochs: int = 5
    batch_size: int = 16
    crop: int = 321
    scale_range: tuple[float, float] = (0.7, 1.3)
    lr: float = 0.01
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 50
    warmup_fraction: float = 0.0  # above 0: the warm-up is this fraction of the run instead
    freeze_backbone: bool = False  # train only the class layer on fixed features
    step_epochs: float = 3.0  # x0.3 every this many epochs
    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    workers: int = 0
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        checks.schedule(self)
        checks.scales("--scales", self.scales)
        checks.seed_and_workers(self)
        if self.freeze_backbone and self.weights == "none" and self.checkpoint is None:
            raise checks.OptionError("--freeze-backbone needs pretrained --weights: a random backbone's features teach the class layer nothing")
        for split in self.cam_splits:
            check_name(split, "split name", "--cam-split")


def cams_path(out: Path, split: str) -> Path:
    return Path(out) / f"cams_{split}.h5"


# besides the usual runtime keys, the CAM splits only say what is written after training
_RUNTIME_KEYS = (*RUNTIME_KEYS, "cam_splits", "checkpoint")


def train_classifier(cfg: CamConfig, weak: WeakDataset, device: torch.device, progress=None) -> Classifier:
    if len(weak) < cfg.batch_size:
        raise DgcnError(f"{len(weak)} training images give fewer than one batch of {cfg.batch_size}; lower --batch-size")
    seed_everything(cfg.seed)
    # built before the run folder is touched: a bad backbone or weights file must not cost an earlier run
    model = place(build_classifier(cfg.backbone, weak.num_classes - 1, cfg.weights, cfg.freeze_backbone), device)
    run_cfg = to_jsonable(cfg)
    run_cfg["fingerprint"] = config_fingerprint(run_cfg, ignore=_RUNTIME_KEYS)
    folder = RunFolder(Path(cfg.out) / "classifier", resume=cfg.resume, overwrite=cfg.overwrite)
    finished, resume_state = prepare_run(folder, run_cfg, cfg.resume)
    if finished is not None:
        load_model_state(model, finished["model"], folder.final)
        return model.eval()
    folder.write_config(run_cfg)
    opt = torch.optim.SGD(model.param_groups(cfg.lr, cfg.head_lr_mult, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    train_set = WeakTrainSet(weak, cfg.crop, cfg.seed, cfg.scale_range)
    ipe = len(weak) // cfg.batch_size

    def make_loader(epoch: int, start: int):
        return epoch_loader(train_set, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch, start_batch=start,
                            workers=cfg.workers)

    def step(batch: dict, iteration: int) -> dict[str, float]:
        x, y = batch["image"].to(device), batch["labels"].to(device)
        loss = F.multilabel_soft_margin_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    run_loop(
        model=model, optimizer=opt,
        schedule=Schedule(cfg.lr, ipe, warmup_length(cfg.warmup_iters, cfg.warmup_fraction, cfg.epochs * ipe), cfg.step_epochs),
        loop=LoopConfig(epochs=cfg.epochs, iters_per_epoch=ipe),
        folder=folder, make_loader=make_loader, step=step,
        model_config=model.init_args, run_config=run_cfg, kind="classifier",
        progress=progress, resume_from=resume_state,
    )
    return model.eval()


def load_classifier(path: Path, device: torch.device) -> Classifier:
    state = load_checkpoint(path)
    mc = state["model_config"]
    require_kind(state, "classifier", path)
    model = build_classifier(mc["backbone"], mc["num_classes"])
    load_model_state(model, state["model"], path)
    return place(model, device).eval()


@torch.no_grad()
def multiscale_cam(model: Classifier, image: np.ndarray, classes: Sequence[int], scales: Sequence[float], device: torch.device) -> np.ndarray:
    """(n, H, W) float32 CAMs of the given classes (1-based ids), ReLU'd, max-normalised."""
    h, w = image.shape[:2]
    if len(classes) == 0:
        return np.zeros((0, h, w), dtype=np.float32)
    x = to_tensor(image)[None].to(device)
    idx = torch.as_tensor([c - 1 for c in classes], device=device)
    acc = torch.zeros((len(classes), h, w), device=device)
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False, recompute_scale_factor=False)
        both = torch.cat([xs, xs.flip(-1)])
        cams = F.relu(model.cam(both)[:, idx].float())
        cams = cams[0] + cams[1].flip(-1)
        acc += resize_scores(cams[None], (h, w))[0]
    acc /= acc.flatten(1).amax(dim=1).clamp_min(1e-5)[:, None, None]
    return acc.cpu().numpy()


def write_cams(cfg: CamConfig, model: Classifier, split: str, device: torch.device, progress=None) -> Path:
    ds = DataConfig(**{**cfg.data.__dict__, "split": split}).build()
    weak = ds.weak()
    meta = ArtifactMeta(
        kind="cams", dataset=ds.name, split=split, class_names=ds.class_names,
        config=to_jsonable(cfg),
        extra={"resolution": "image", "scales": list(cfg.scales), "flip": True, "normalisation": "ReLU, sum over scales, per-class max"},
    )

    def compute(image_id: str) -> dict[str, np.ndarray]:
        classes = weak.labels(image_id)
        cam = multiscale_cam(model, weak.load_image(image_id), classes, cfg.scales, device)
        return {"cam": cam.astype(np.float16), "classes": np.asarray(classes, dtype=np.uint8)}

    with ArtifactWriter(cams_path(cfg.out, split), meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(weak.ids)) as writer:
        return fill(writer, weak.ids, compute, progress)


def run(cfg: CamConfig, progress: Optional[Callable[..., None]] = None) -> list[Path]:
    """Train (or load) the classifier, then write ``cams_<split>.h5`` for each CAM split."""
    device = resolve_device(cfg.device)
    if cfg.checkpoint is not None:
        model = load_classifier(cfg.checkpoint, device)
    else:
        model = train_classifier(cfg, cfg.data.build().weak(), device, progress)
    return [write_cams(cfg, model, split, device, progress) for split in (cfg.cam_splits or (cfg.data.split,))]

