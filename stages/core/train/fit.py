"""Training a segmentation network: shared by ``train`` (seeds + expander) and
``retrain`` (proxy masks + cross-entropy). The caller supplies the label maps
cropped with each image and the loss; this module owns the model, optimiser,
schedule, run folder, resume, validation, and the optional DDP wrapping.

Distributed: when launched by torchrun (``WORLD_SIZE`` > 1) each process takes
a disjoint shard of every epoch's order, BatchNorm becomes SyncBatchNorm (on CUDA) and
only rank 0 writes files. One process is the default: no launcher needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .. import checks
from ..config import RUNTIME_KEYS, DataConfig, to_jsonable
from ..datasets import WeakDataset
from ..device import autocast, place, resolve_device, seed_everything
from ..errors import DgcnError
from ..eval.metrics import ConfusionMatrix
from ..maps import resize_scores
from ..nets import DEFAULT_HEAD, DeepLabV2, build_segmenter
from ..nets.inputs import to_tensor
from .batches import WeakTrainSet, epoch_loader
from .loop import LoopConfig, RunFolder, Schedule, WeightEma, config_fingerprint, prepare_run, run_loop, warmup_length


@dataclass(frozen=True)
class ModelConfig:
    """The segmentation network. ``head``: ``largefov`` (the published code's single
    3x3 conv at dilation 12) or ``aspp``. ``freeze_bn``: keep the backbone's BatchNorm
    scale/shift fixed, as the published code does; None means yes for pretrained
    weights and no for a backbone trained from scratch (whose BatchNorm starts at 1/0)."""

    backbone: str = "resnet101"
    weights: str = "imagenet"
    graph_layers: Optional[tuple[str, ...]] = None
    head: str = DEFAULT_HEAD
    freeze_bn: Optional[bool] = None

    @property
    def bn_frozen(self) -> bool:
        return self.weights != "none" if self.freeze_bn is None else bool(self.freeze_bn)

    def build(self, num_classes: int) -> DeepLabV2:
        return build_segmenter(self.backbone, num_classes, self.weights, self.graph_layers,
                               head=self.head, freeze_bn=self.bn_frozen)


@dataclass(frozen=True)
class OptimConfig:
    """GUIDE 1.5: SGD, momentum 0.9, wd 5e-4, lr 5e-4 (10x head), x0.3 every 3 epochs, 200-it warm-up."""

    epochs: int = 7
    batch_size: int = 16
    crop: int = 321
    # random rescale before the crop; (1, 1) = none, as the published code trains (scale=False)
    scale_range: tuple[float, float] = (1.0, 1.0)
    lr: float = 5e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 200
    warmup_fraction: float = 0.0  # above 0: the warm-up is this fraction of the run instead
    step_epochs: float = 3.0
    gamma: float = 0.3
    ckpt_every: int = 50
    ema_decay: float = 0.0  # 0: off (the paper); e.g. 0.99 averages over about 100 steps

    def __post_init__(self) -> None:
        checks.schedule(self)


@dataclass(frozen=True)
class RunConfig:
    out: Path
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    amp: bool = True
    val: Optional[DataConfig] = None  # validation mIoU after each epoch (best.pt kept)
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        checks.seed_and_workers(self)


LossFn = Callable[[DeepLabV2, dict, torch.device, int], tuple[torch.Tensor, dict[str, float]]]


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world, device) under torchrun; the backend follows the device trained on
    (``--device cpu`` on a CUDA host is gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        # pin the process to its GPU before NCCL starts, so collectives use that device
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


@torch.no_grad()
def validate(model: DeepLabV2, data: DataConfig, device: torch.device, shard: tuple[int, int] = (0, 1)) -> float:
    """Single-scale val mIoU (no flip, no CRF): a training monitor, not the paper's protocol.

    Under DDP every rank scores its own share of the images and the confusion
    matrices are summed, so no rank idles in a collective while one validates alone.
    """
    ds = data.build()
    rank, world = shard
    mat = ConfusionMatrix(ds.num_classes)
    model.eval()
    for image_id in ds.ids[rank::world]:
        image = ds.load_image(image_id)
        x = to_tensor(image)[None].to(device)
        logits = model(x).float()
        logits = resize_scores(logits, image.shape[:2])
        mat.update(ds.load_mask(image_id), logits.argmax(1)[0].cpu().numpy().astype(np.uint8))
    if world > 1:
        total = torch.from_numpy(mat.mat).to(device)
        dist.all_reduce(total)
        mat.mat = total.cpu().numpy()
    return mat.results(ds.class_names).miou


def fit_segmenter(
    *,
    run: RunConfig,
    model_cfg: ModelConfig,
    optim: OptimConfig,
    weak: WeakDataset,
    label_maps: Callable[[str, tuple[int, int]], list[np.ndarray]],
    loss_fn: LossFn,
    stage_config: Mapping[str, Any],
    keep_image: bool = False,
    progress: Optional[Callable[..., None]] = None,
) -> Path:
    """Train and return the path of the final checkpoint (``final.pt`` in the run folder)."""
    if run.val is not None and run.val.split == weak.split:
        raise DgcnError(f"--val-split {weak.split} is the training split: validation reads masks, so it must be another split")
    device = resolve_device(run.device)
    rank, world, device = _distributed(device)
    per_rank = len(weak) // world
    if per_rank < optim.batch_size:
        raise DgcnError(f"{len(weak)} training images give fewer than one batch of {optim.batch_size} per process; lower --batch-size")
    ipe = per_rank // optim.batch_size
    run_cfg = dict(to_jsonable(stage_config))
    run_cfg["class_names"] = list(weak.class_names)
    run_cfg["world_size"] = world  # iterations per epoch depend on it: part of what the run is
    run_cfg["fingerprint"] = config_fingerprint(run_cfg, ignore=RUNTIME_KEYS)
    seed_everything(run.seed)
    # the network is built before the run folder is touched, so a bad option
    # (backbone, graph layers, weights file) fails without deleting an earlier run
    model: torch.nn.Module = place(model_cfg.build(weak.num_classes), device)
    model_config = model.init_args
    # rank 0 prepares the folder; the other ranks wait, then only read it
    if rank == 0:
        folder = RunFolder(run.out, resume=run.resume, overwrite=run.overwrite)
    if world > 1:
        dist.barrier()
    if rank != 0:
        folder = RunFolder(run.out, resume=True, overwrite=False)
    finished, resume_state = prepare_run(folder, run_cfg, run.resume)
    if finished is not None:
        return folder.final
    if rank == 0:
        folder.write_config(run_cfg)
    opt = torch.optim.SGD(model.param_groups(optim.lr, optim.head_lr_mult, optim.weight_decay), lr=optim.lr, momentum=optim.momentum)
    if world > 1 and device.type == "cuda":  # SyncBatchNorm has no CPU (gloo) implementation
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model  # the network itself, before any DDP wrapper: averaged, validated, saved
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = WeightEma(net, optim.ema_decay) if optim.ema_decay > 0 else None
    train_set = WeakTrainSet(weak, optim.crop, run.seed, optim.scale_range, label_maps=label_maps, keep_image=keep_image)

    def make_loader(epoch: int, start: int):
        return epoch_loader(train_set, batch_size=optim.batch_size, seed=run.seed, epoch=epoch, start_batch=start,
                            workers=run.workers, shard=(rank, world))

    def step(batch: dict, iteration: int) -> dict[str, float]:
        with autocast(device, run.amp):
            loss, stats = loss_fn(model, batch, device, iteration)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), **stats}

    def on_epoch_end(epoch: int) -> Optional[float]:
        if run.val is None:
            return None
        return validate(ema.model if ema is not None else net, run.val, device, shard=(rank, world))

    run_loop(
        model=model, optimizer=opt,
        schedule=Schedule(optim.lr, ipe, warmup_length(optim.warmup_iters, optim.warmup_fraction, optim.epochs * ipe),
                          optim.step_epochs, optim.gamma),
        loop=LoopConfig(epochs=optim.epochs, iters_per_epoch=ipe, ckpt_every=optim.ckpt_every),
        folder=folder, make_loader=make_loader, step=step,
        model_config=model_config, run_config=run_cfg, kind="segmenter", on_epoch_end=on_epoch_end,
        progress=progress if rank == 0 else None, is_main=rank == 0, resume_from=resume_state, ema=ema,
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return folder.final


class LazyLabelMaps:
    """Per-image label maps read from an artifact, opened lazily in each process
    (an open HDF5 handle must not cross into loader workers)."""

    def __init__(self, path: Path, kinds: Sequence[str], class_names: Sequence[str], ids: Sequence[str]) -> None:
        from ..io.artifacts import ArtifactReader

        self.path, self.kinds, self.class_names = Path(path), tuple(kinds), tuple(class_names)
        with ArtifactReader(self.path, kind=self.kinds, class_names=self.class_names) as r:
            r.require_ids(ids)
            self.fingerprint = r.fingerprint
            # the network that made these labels, if one did (see ``segment.run_provenance``)
            made_by = r.extra.get("model")
            self.made_by = dict(made_by) if isinstance(made_by, dict) else {}
        self._reader = None

    def __call__(self, image_id: str, image_size: Sequence[int]) -> list[np.ndarray]:
        from ..io.artifacts import ArtifactReader

        if self._reader is None:
            self._reader = ArtifactReader(self.path, kind=self.kinds, class_names=self.class_names)
        return [self._reader.label(image_id, image_size)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}
