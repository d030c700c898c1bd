"""``train``, ``graphcut-label`` and ``retrain``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from stages import graphcut_label as gcl_stage
from stages import retrain as retrain_stage
from stages import train as train_stage
from stages.core.expanders import EXPANDERS
from stages.core.nets import DEFAULT_HEAD, HEADS
from stages.core.train.fit import ModelConfig, OptimConfig, RunConfig

from .common import (
    CacheDirOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    LabelsFileOpt,
    OverwriteOpt,
    ResumeOpt,
    SeedOpt,
    backbone_option,
    data_config,
    handle_errors,
    out,
    parse_range,
    parse_scales,
    parse_warmup,
    progress_bar,
)
from .run_config import RETRAIN_FIELDS, TRAIN_FIELDS, require, with_run_config

ExpanderOpt = typer.Option("graphcut", "--expander", help=f"Seed expander: {', '.join(EXPANDERS.names())}.")
ExpanderOptsOpt = typer.Option([], "--expander-opt", help="Expander option KEY=VALUE (repeatable), e.g. k=9 theta=0.7 c1=10 log_base=10 workers=2.")


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs with int/float/bool values recognised."""
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--expander-opt")
        low = raw.lower()
        if low in ("true", "false"):
            opts[key] = low == "true"
            continue
        try:
            opts[key] = int(raw)
        except ValueError:
            try:
                opts[key] = float(raw)
            except ValueError:
                opts[key] = raw
    return opts


def _optim(p: dict[str, Any]) -> OptimConfig:
    warmup_iters, warmup_fraction = parse_warmup(p["warmup"])
    return OptimConfig(epochs=p["epochs"], batch_size=p["batch_size"], crop=p["crop"], lr=p["lr"], warmup_iters=warmup_iters,
                       warmup_fraction=warmup_fraction, step_epochs=p["lr_step"], head_lr_mult=p["head_mult"],
                       ema_decay=p["ema"], scale_range=parse_range(p["rescale"], "--rescale"))


ConfigOpt = typer.Option(None, "--config", exists=True, dir_okay=False,
                         help="Rerun with the settings of a run's config.json; options given here override it.")


HeadOpt = typer.Option(DEFAULT_HEAD, "--head", help=f"Segmentation head: {', '.join(HEADS)} (largefov: one 3x3 conv at dilation 12, the published code's; aspp: DeepLab-v2's rates 6/12/18/24).")
FreezeBnOpt = typer.Option(None, "--freeze-bn/--train-bn", help="Keep the backbone's BatchNorm scale/shift fixed (the published code). Default: frozen for pretrained weights, trained for --weights none.", show_default=False)
RescaleOpt = typer.Option("1", "--rescale", help="Random rescale range LO,HI before the crop; 1 = none (the published code; e.g. 0.7,1.3).")


HeadMultOpt = typer.Option(10.0, "--head-lr-mult", min=0.0, help="Learning-rate factor of the new head (paper: 10; 1 suits a backbone trained from scratch).")
# the schedule options train and retrain share (paper defaults, GUIDE 1.5)
EpochsOpt = typer.Option(7, "--epochs", min=1, help="Training epochs.")
BatchOpt = typer.Option(16, "--batch-size", min=1, help="Images per batch (per process under DDP).")
CropOpt = typer.Option(321, "--crop", min=16, help="Training crop size (paper: 321).")
LrOpt = typer.Option(5e-4, "--lr", min=0.0, help="Backbone learning rate (the head gets --head-lr-mult times it).")
WarmupOpt = typer.Option("200", "--warmup", help="Warm-up: iterations (paper: 200, about 4% of its VOC run), or a share of this run's iterations such as 5%.")
AmpOpt = typer.Option(True, "--amp/--no-amp", help="bf16 autocast on CUDA.")
WorkersOpt = typer.Option(0, "--workers", min=0, help="Data-loader worker processes.")
ValSplitOpt = typer.Option(None, "--val-split", help="Report single-scale val mIoU after each epoch on this split (keeps best.pt).")
LrStepOpt = typer.Option(3.0, "--lr-step-epochs", min=0.0, help="Multiply the learning rate by 0.3 every this many epochs (paper: 3).")
EmaOpt = typer.Option(0.0, "--ema", min=0.0, max=0.9999,
                      help="Keep an exponential moving average of the weights with this decay (e.g. 0.99) and use it for "
                           "validation and the saved model; 0 (the paper) keeps the last weights.")


def _launch_distributed(nproc: int) -> None:
    """Re-run this very command under torchrun with ``nproc`` processes."""
    args, skip = [], False
    for a in sys.argv[1:]:  # drop "--nproc N" and "--nproc=N": the children run one process each
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "dgcn_cli", *args]
    out.print("launching: " + " ".join(cmd))
    raise typer.Exit(subprocess.call(cmd, env={**os.environ}))


def train(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder: config.json, metrics.jsonl, last.pt, best.pt, final.pt (needed unless --config)."),
    seeds: Optional[Path] = typer.Option(None, "--seeds", exists=True, dir_okay=False, help="seeds.h5 from `dgcn seeds` (needed unless --config)."),
    dataset: str = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Dataset split to process."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    val_split: Optional[str] = ValSplitOpt,
    backbone: str = backbone_option("resnet101", " (paper: resnet101)"),
    weights: str = typer.Option("imagenet", "--weights", help="imagenet, none, or a weights file."),
    graph_layers: str = typer.Option("", "--graph-layers", help="Comma-separated backbone layers for the graph-cut node features (default: the backbone's)."),
    head: str = HeadOpt,
    freeze_bn: Optional[bool] = FreezeBnOpt,
    expander: str = ExpanderOpt,
    expander_opt: list[str] = ExpanderOptsOpt,
    boundary: str = typer.Option("crf", "--boundary-loss", help="crf (KL to the dense CRF of H) or none."),
    boundary_weight: float = typer.Option(1.0, "--boundary-weight", min=0.0, help="Weight of the boundary loss against the seeding loss."),
    boundary_clip: str = typer.Option("0.05,20", "--boundary-clip", help="Clip Q/H into LO,HI in the boundary loss (DSRG's and the published code's 0.05,20); none: plain KL."),
    seed_norm: str = typer.Option("image", "--seed-loss-norm", help="image: each image's seeding-loss sums over its own counts, then the batch mean (the published code); batch: pooled over the batch."),
    crf_workers: int = typer.Option(1, "--crf-workers", min=0, help="Processes running the boundary-loss CRF."),
    expand_after: int = typer.Option(0, "--expand-after", min=0, help="Train on the seeds alone for this many iterations before the expander starts (0: from the first step, the paper)."),
    epochs: int = EpochsOpt,
    batch_size: int = BatchOpt,
    crop: int = CropOpt,
    rescale: str = RescaleOpt,
    lr: float = LrOpt,
    warmup: str = WarmupOpt,
    lr_step: float = LrStepOpt,
    head_mult: float = HeadMultOpt,
    ema: float = EmaOpt,
    amp: bool = AmpOpt,
    workers: int = WorkersOpt,
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes for distributed (DDP) training, launched with torchrun."),
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train the segmentation network on seeds expanded every iteration (DGCN)."""
    if nproc > 1:
        _launch_distributed(nproc)
    cfg = _train_config(with_run_config(ctx, config, "train", TRAIN_FIELDS, dict(locals())))
    with progress_bar("train") as update:
        path = train_stage.run(cfg, progress=update)
    out.print(f"wrote {path}")


def _train_config(p: dict[str, Any]) -> train_stage.TrainConfig:
    require(p, "out_dir", "seeds")
    if p["seed_norm"] not in ("image", "batch"):
        raise typer.BadParameter(f"expected image or batch, got {p['seed_norm']!r}", param_hint="--seed-loss-norm")
    clip = None if p["boundary_clip"].strip().lower() == "none" else parse_range(p["boundary_clip"], "--boundary-clip")
    return train_stage.TrainConfig(
        run=_run(p), seeds=p["seeds"], data=_data(p, p["split"]),
        model=ModelConfig(p["backbone"], p["weights"], tuple(p["graph_layers"].split(",")) if p["graph_layers"] else None,
                          p["head"], p["freeze_bn"]),
        optim=_optim(p),
        expander=p["expander"], expander_options=parse_options(p["expander_opt"]),
        boundary_loss=p["boundary"], boundary_weight=p["boundary_weight"], boundary_clip=clip,
        seed_loss_per_image=p["seed_norm"] == "image", crf_workers=p["crf_workers"], expand_after=p["expand_after"],
    )


def _data(p: dict[str, Any], split: str):
    return data_config(p["dataset"], p["data_root"], split, p["labels_file"], p["cache_dir"])


def _run(p: dict[str, Any]) -> RunConfig:
    val = _data(p, p["val_split"]) if p["val_split"] else None
    return RunConfig(out=p["out_dir"], device=p["device"], seed=p["seed"], workers=p["workers"], amp=p["amp"], val=val,
                     resume=p["resume"], overwrite=p["overwrite"])


def graphcut_label(
    checkpoint: Path = typer.Option(..., "--checkpoint", exists=True, help="Segmentation checkpoint from `dgcn train`."),
    seeds: Path = typer.Option(..., "--seeds", exists=True, dir_okay=False, help="seeds.h5 for the same split."),
    out_file: Path = typer.Option(..., "--out", help="labels.h5 to write."),
    dataset: str = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Dataset split to process."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    expander: str = ExpanderOpt,
    expander_opt: list[str] = ExpanderOptsOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Proxy labels: a trained network's probabilities and features expand the seeds."""
    cfg = gcl_stage.GraphcutLabelConfig(
        checkpoint=checkpoint, seeds=seeds, out=out_file,
        data=data_config(dataset, data_root, split, labels_file, cache_dir),
        expander=expander, expander_options=parse_options(expander_opt), device=device,
        overwrite=overwrite, resume=resume,
    )
    with progress_bar("graphcut-label") as update:
        path = gcl_stage.run(cfg, progress=update)
    out.print(f"wrote {path}")


def retrain(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (pseudo_labels.h5 and checkpoints; needed unless --config)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, dir_okay=False, help="Label the split with this trained model (multi-scale + CRF)."),
    labels: Optional[Path] = typer.Option(None, "--labels", exists=True, dir_okay=False, help="Or train on these proxy labels (labels.h5)."),
    dataset: str = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Dataset split to process."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    val_split: Optional[str] = ValSplitOpt,
    backbone: str = backbone_option("resnet101", " (paper: resnet101)"),
    weights: str = typer.Option("imagenet", "--weights", help="Backbone initialisation: imagenet, none, or a weights file."),
    head: str = HeadOpt,
    freeze_bn: Optional[bool] = FreezeBnOpt,
    scales: str = typer.Option("0.75,1,1.25", "--scales", help="Scales for labelling (each also flipped)."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Average each scale with its mirror when labelling."),
    crf: bool = typer.Option(True, "--crf/--no-crf", help="Dense CRF on the pseudo labels."),
    epochs: int = EpochsOpt,
    batch_size: int = BatchOpt,
    crop: int = CropOpt,
    rescale: str = RescaleOpt,
    lr: float = LrOpt,
    warmup: str = WarmupOpt,
    lr_step: float = LrStepOpt,
    head_mult: float = HeadMultOpt,
    ema: float = EmaOpt,
    amp: bool = AmpOpt,
    workers: int = WorkersOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train a fresh network on proxy masks (from a trained model or labels.h5) with cross-entropy."""
    p = with_run_config(ctx, config, "retrain", RETRAIN_FIELDS, dict(locals()))
    require(p, "out_dir")
    cfg = retrain_stage.RetrainConfig(
        run=_run(p), data=_data(p, p["split"]),
        model=ModelConfig(p["backbone"], p["weights"], head=p["head"], freeze_bn=p["freeze_bn"]),
        optim=_optim(p),
        checkpoint=p["checkpoint"], labels=p["labels"], scales=parse_scales(p["scales"]), flip=p["flip"], crf=p["crf"],
    )
    with progress_bar("retrain") as update:
        path = retrain_stage.run(cfg, progress=update)
    out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train))
    app.command("graphcut-label")(handle_errors(graphcut_label))
    app.command("retrain")(handle_errors(retrain))
