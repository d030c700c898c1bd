"""The one training loop's set-up, shared by every stage that trains a network: ``cam``
(the classifier on image-level labels), ``train`` (seeds + expander) and ``retrain`` (proxy
masks + cross-entropy). A ``Task`` says what differs (the network, its loss, what each batch
carries, how it is validated); ``fit`` owns the rest: optimiser, schedule, run folder,
resume, mixed precision, weight average, validation, the run's logs (``train.log``, optional
TensorBoard) and the optional DDP wrapping.

Distributed: when launched by torchrun (``WORLD_SIZE`` > 1) each process takes
a disjoint shard of every epoch's order, BatchNorm becomes SyncBatchNorm (on CUDA) and
only rank 0 writes files. One process is the default: no launcher needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import checks, options, provenance
from ..config import RUNTIME_KEYS, config_fingerprint, to_jsonable
from ..datasets import DataConfig, WeakDataset
from ..device import (
    autocast,
    grad_scaler,
    place,
    precision,
    resolve_device,
    seed_everything,
)
from ..errors import DgcnError
from ..options import opt
from ..stage import Progress
from .batches import WeakTrainSet, epoch_loader
from .loop import (
    LoopConfig,
    RunFolder,
    Schedule,
    WeightEma,
    prepare_run,
    require_tensorboard,
    run_loop,
    warmup_length,
)
from .repeated_sgd import RepeatedSGD, enclosing_counts, repeated_groups


@dataclass(frozen=True)
class OptimConfig:
    """docs/method.md §5: SGD, momentum 0.9, wd 5e-4, lr 5e-4 (10x head), x0.3 every 3 epochs, 200-it warm-up."""

    epochs: int = opt(7, "Training epochs.")
    batch_size: int = opt(16, "Images per batch (per process under DDP).")
    crop: int = opt(321, "Training crop size (paper: 321).")
    # random rescale before the crop; (1, 1) = none, as the published code trains (scale=False)
    scale_range: tuple[float, float] = opt((1.0, 1.0), "Random rescale range LO,HI before the crop; 1 = none (the published "
                                                       "code; e.g. 0.7,1.3).", aliases=("--rescale",),
                                           parse=lambda t: options.float_range(t, "--scale-range"), show=options.show_floats)
    lr: float = opt(5e-4, "Backbone learning rate (the head gets --head-lr-mult times it).")
    head_lr_mult: float = opt(10.0, "Learning-rate factor of the new head (paper: 10; 1 suits a backbone trained from scratch).")
    momentum: float = opt(0.9, "SGD momentum (paper: 0.9).")
    weight_decay: float = 5e-4
    warmup_iters: int = opt(200, "Warm-up: iterations (paper: 200, about 4% of its VOC run), or a share of this run's "
                                 "iterations such as 5%.", flag="--warmup", parse=options.warmup,
                            sets=("warmup_iters", "warmup_fraction"))
    warmup_fraction: float = 0.0  # above 0: the warm-up is this fraction of the run instead
    step_epochs: float = opt(3.0, "Multiply the learning rate by gamma (0.3) every this many epochs (paper: 3; --lr-schedule step).",
                             aliases=("--lr-step-epochs",))
    gamma: float = 0.3
    ckpt_every: int = 50
    ema_decay: float = opt(0.0, "Keep an exponential moving average of the weights with this decay (e.g. 0.99) and use it "
                                "for validation and the saved model; 0 (the paper) keeps the last weights.", aliases=("--ema",))
    # "step" (x gamma every step_epochs: the published DGCN training) or "poly": Caffe's
    # (1 - it/max_it)^poly_power, DSRG's retraining (loop.Schedule); warm-up multiplies either
    lr_schedule: str = opt("step", "Learning-rate decay: step (x0.3 every --step-epochs, the published DGCN training) or "
                                   "poly (lr x (1 - it/max_it)^--poly-power, Caffe's poly: DSRG's retraining). The warm-up "
                                   "multiplies either.")
    poly_power: float = opt(0.9, "Power of --lr-schedule poly (DSRG: 0.9).")
    # hustvl/DGCN's optimiser: each backbone parameter stepped once per module enclosing it
    # (repeated_sgd); off, every parameter steps once
    repeat_enclosed_params: bool = opt(False, "Reproduce hustvl/DGCN's optimiser exactly: it lists each backbone parameter "
                                              "once per module enclosing it (conv1, bn1, layer1-4 and each submodule down "
                                              "to the layer holding it), so SGD steps it that many times per iteration, "
                                              "with one momentum buffer (a ResNet bottleneck conv 3 times, a downsample "
                                              "conv 4). Other backbones: the same walk over their top-level modules. Off: "
                                              "every parameter steps once.")

    def __post_init__(self) -> None:
        checks.schedule(self)


@dataclass(frozen=True)
class RunConfig:
    out: Path = opt(help="Run folder: config.json, metrics.jsonl, last.pt, best.pt, final.pt (needed unless --config).",
                    required=True)
    device: str = options.device_opt()
    seed: int = opt(0, "Random seed (the order of the images, their crops and flips, the new layers' weights).")
    workers: int = options.workers_opt()
    amp: bool = opt(True, "Mixed precision on CUDA: bf16 autocast, fp16 with a gradient scaler on GPUs without bf16.")
    # validated after each epoch (best.pt kept): the same data options, this split
    val: Optional[DataConfig] = opt(None, "Validate after each epoch on this split and keep the best in best.pt: "
                                          "single-scale mIoU for a segmenter, mAP of the image labels for the classifier.",
                                    flag="--val-split")
    resume: bool = options.resume_opt(" from its last checkpoint (same options); a finished training is kept, "
                                      "and a partly written output (CAMs, pseudo labels) continues where it stopped")
    overwrite: bool = options.overwrite_opt()
    # TensorBoard scalars in <out>/tb/ (needs the optional tensorboard package); how the run
    # is watched, not what it trains: a runtime key, in no fingerprint
    tensorboard: bool = opt(False, "Also log the training's scalars for TensorBoard in the run folder's tb/ "
                                   "(needs the tensorboard package: pip install 'dgcn[tensorboard]').")
    # keep every epoch's weights (epoch_<k>.pt) besides last/best/final: a runtime key too
    keep_epochs: bool = opt(False, "Also keep each epoch's weights in the run folder as epoch_<k>.pt "
                                   "(to label or predict with the network of any epoch).")

    def __post_init__(self) -> None:
        checks.seed_and_workers(self)


# (network, batch, device, iteration) -> (loss, statistics to log)
LossFn = Callable[[nn.Module, dict, torch.device, int], tuple[torch.Tensor, dict[str, float]]]
# (network, validation split, device, (rank, world)) -> score, higher is better
ValidateFn = Callable[[nn.Module, DataConfig, torch.device, tuple[int, int]], float]
LabelMapsFn = Callable[[str, tuple[int, int]], list[np.ndarray]]


@dataclass(frozen=True)
class Task:
    """What one training differs in from another."""

    kind: str  # "classifier" or "segmenter": recorded in every checkpoint
    build: Callable[[int], nn.Module]  # classes (background included) -> the network
    loss: LossFn
    label_maps: Optional[LabelMapsFn] = None  # per-image maps, cropped and flipped with the image
    keep_image: bool = False  # batches also carry the uint8 crop (for the boundary-loss CRF)
    validate: Optional[ValidateFn] = None
    val_name: str = "val_miou"  # the metrics.jsonl key of the validation score


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: LossFn, batch: dict,
               device: torch.device, iteration: int = 0, amp: bool = True,
               scaler: Optional[torch.amp.GradScaler] = None) -> dict[str, float]:
    """One optimisation step: the loss under autocast (bf16 on CUDA, fp16 on GPUs without
    bf16), backward, SGD step. ``scaler`` (fp16): the loss is scaled before backward and the
    step skipped where the scaled gradients overflowed (``device.grad_scaler``)."""
    with autocast(device, amp):
        value, stats = loss(model, batch, device, iteration)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        value.backward()
        optimizer.step()
    else:
        scaler.scale(value).backward()
        scaler.step(optimizer)
        scaler.update()
    return {"loss": float(value.detach()), **stats}


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.SGD:
    """SGD over the network's parameter groups (backbone at lr, head at lr x head_lr_mult);
    with ``repeat_enclosed_params``, the published code's repeated steps (``repeated_sgd``)."""
    groups = model.param_groups(optim.lr, optim.head_lr_mult, optim.weight_decay)
    if optim.repeat_enclosed_params:
        return RepeatedSGD(repeated_groups(groups, enclosing_counts(model.backbone.trunk)),
                           lr=optim.lr, momentum=optim.momentum)
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)


def make_schedule(optim: OptimConfig, iters_per_epoch: int) -> Schedule:
    """The learning rate of every iteration of a run of ``iters_per_epoch`` iterations an epoch."""
    total = optim.epochs * iters_per_epoch
    return Schedule(optim.lr, iters_per_epoch, warmup_length(optim.warmup_iters, optim.warmup_fraction, total),
                    optim.step_epochs, optim.gamma, kind=optim.lr_schedule, power=optim.poly_power, total_iters=total)


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


def _run_record(stage_config: Mapping[str, Any], weak: WeakDataset, world: int, runtime_keys: Iterable[str]) -> dict[str, Any]:
    """What the run folder's config.json holds, with the fingerprint ``--resume`` compares."""
    record = dict(to_jsonable(stage_config))
    record["class_names"] = list(weak.class_names)
    record["world_size"] = world  # iterations per epoch depend on it: part of what the run is
    record["fingerprint"] = config_fingerprint(record, ignore=(*RUNTIME_KEYS, *runtime_keys))
    return record


def _open_folder(run: RunConfig, rank: int, world: int) -> RunFolder:
    """Rank 0 prepares the run folder (refusing or clearing an earlier run); the other ranks
    wait for it, then only read it."""
    folder = RunFolder(run.out, resume=run.resume, overwrite=run.overwrite) if rank == 0 else None
    if world > 1:
        dist.barrier()
    return folder if folder is not None else RunFolder(run.out, resume=True, overwrite=False)


@torch.no_grad()
def _same_as_rank0(model: nn.Module) -> None:
    """Give every rank rank 0's weights and buffers before a sharded validation. DDP keeps the
    parameters equal, but each rank's last forward updated its own BatchNorm statistics (and a
    weight average averages them): without this, each rank would score its share of the images
    with a slightly different network than the one rank 0 saves."""
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def fit(
    *,
    run: RunConfig,
    optim: OptimConfig,
    task: Task,
    weak: WeakDataset,
    stage_config: Mapping[str, Any],
    progress: Optional[Progress] = None,
    runtime_keys: Iterable[str] = (),
) -> Path:
    """Train and return the path of the final checkpoint (``final.pt`` in ``run.out``).

    ``stage_config`` is what the run folder's ``config.json`` records and what ``--resume``
    compares (apart from ``RUNTIME_KEYS`` and the stage's own ``runtime_keys``: settings recorded
    so that ``--config`` repeats them, which do not change what is trained)."""
    if run.val is not None and run.val.split == weak.split:
        raise DgcnError(f"--val-split {weak.split} is the training split: validation must score other images")
    if run.val is not None and task.validate is None:
        raise DgcnError(f"a {task.kind} has no validation score; drop --val-split")
    if run.tensorboard:
        require_tensorboard()  # before anything is trained or written
    device = resolve_device(run.device)
    rank, world, device = _distributed(device)
    per_rank = len(weak) // world
    if per_rank < optim.batch_size:
        raise DgcnError(f"{len(weak)} training images give fewer than one batch of {optim.batch_size} per process; lower --batch-size")
    ipe = per_rank // optim.batch_size
    run_cfg = _run_record(stage_config, weak, world, runtime_keys)
    seed_everything(run.seed)
    # the network is built before the run folder is touched, so a bad option
    # (backbone, graph layers, weights file) fails without deleting an earlier run
    model: nn.Module = place(task.build(weak.num_classes), device)
    model_config = model.init_args
    folder = _open_folder(run, rank, world)
    finished, resume_state = prepare_run(folder, run_cfg, run.resume)
    if finished is not None:
        return folder.final
    if rank == 0:
        folder.write_config(run_cfg)
    opt = make_optimizer(model, optim)
    if world > 1 and device.type == "cuda":  # SyncBatchNorm has no CPU (gloo) implementation
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model  # the network itself, before any DDP wrapper: averaged, validated, saved
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = WeightEma(net, optim.ema_decay) if optim.ema_decay > 0 else None
    train_set = WeakTrainSet(weak, optim.crop, run.seed, optim.scale_range, label_maps=task.label_maps,
                             keep_image=task.keep_image)

    def make_loader(epoch: int, start: int):
        return epoch_loader(train_set, batch_size=optim.batch_size, seed=run.seed, epoch=epoch, start_batch=start,
                            workers=run.workers, shard=(rank, world))

    scaler = grad_scaler(device, run.amp)

    def step(batch: dict, iteration: int) -> dict[str, float]:
        return train_step(model, opt, task.loss, batch, device, iteration, run.amp, scaler)

    def on_epoch_end(epoch: int) -> Optional[float]:
        if run.val is None:
            return None
        validated = ema.model if ema is not None else net
        if world > 1:
            _same_as_rank0(validated)
        return task.validate(validated, run.val, device, (rank, world))

    run_loop(
        model=model, optimizer=opt,
        schedule=make_schedule(optim, ipe),
        loop=LoopConfig(epochs=optim.epochs, iters_per_epoch=ipe, ckpt_every=optim.ckpt_every,
                        keep_epochs=run.keep_epochs),
        folder=folder, make_loader=make_loader, step=step,
        model_config=model_config, run_config=run_cfg, kind=task.kind, on_epoch_end=on_epoch_end,
        val_name=task.val_name,
        progress=progress if rank == 0 else None, is_main=rank == 0, resume_from=resume_state, ema=ema,
        scaler=scaler, precision=precision(device, run.amp), environment=provenance.environment(device),
        tensorboard=run.tensorboard,
        batches=f"batch {optim.batch_size}" + (f" per process x {world}" if world > 1 else ""),
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return folder.final


def is_main_process() -> bool:
    """False in the torchrun processes other than rank 0 (they train, but write nothing)."""
    return int(os.environ.get("RANK", "0")) == 0
