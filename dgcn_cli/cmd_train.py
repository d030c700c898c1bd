"""``train``, ``graphcut-label`` and ``retrain``."""
from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any, Optional

import typer

from stages import graphcut_label as gcl_stage
from stages import retrain as retrain_stage
from stages import train as train_stage
from stages.core.expanders import EXPANDERS
from stages.core.nets import DEFAULT_HEAD, HEADS
from stages.core.train.segmenter import ModelConfig

from .common import (
    CacheDirOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    LabelsFileOpt,
    OverwriteOpt,
    ResumeOpt,
    TrainResumeOpt,
    SeedOpt,
    backbone_option,
    data_config,
    handle_errors,
    parse_range,
    parse_scales,
    print_result,
    progress_bar,
)
from .run_config import RETRAIN_FIELDS, TRAIN_FIELDS, require, with_run_config
from .training_options import (
    AmpOpt,
    BatchOpt,
    ConfigOpt,
    CropOpt,
    EmaOpt,
    EpochsOpt,
    HeadMultOpt,
    LrOpt,
    LrScheduleOpt,
    LrStepOpt,
    NprocOpt,
    PolyPowerOpt,
    RepeatEnclosedOpt,
    KeepEpochsOpt,
    TensorboardOpt,
    RescaleOpt,
    ValSplitOpt,
    WarmupOpt,
    WorkersOpt,
    launch_distributed,
    optim_config,
    print_precision,
    run_config,
    split_data,
)

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


HeadOpt = typer.Option(DEFAULT_HEAD, "--head", help=f"Segmentation head: {', '.join(HEADS)} (largefov: one 3x3 conv at dilation 12, the published code's; aspp: DeepLab-v2's rates 6/12/18/24).")
FreezeBnOpt = typer.Option(None, "--freeze-bn/--train-bn", help="Keep the backbone's BatchNorm scale/shift fixed (the published code). Default: frozen for pretrained weights, trained for --weights none.", show_default=False)


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
    boundary_weight: float = typer.Option(1.0, "--boundary-weight", help="Weight of the boundary loss against the seeding loss."),
    boundary_clip: str = typer.Option("0.05,20", "--boundary-clip", help="Clip Q/H into LO,HI in the boundary loss (DSRG's and the published code's 0.05,20); none: plain KL."),
    seed_norm: str = typer.Option("image", "--seed-loss-norm", help="image: each image's seeding-loss sums over its own counts, then the batch mean (the published code); batch: pooled over the batch."),
    crf_workers: int = typer.Option(1, "--crf-workers", help="Processes running the boundary-loss CRF."),
    expand_after: int = typer.Option(0, "--expand-after", help="Train on the seeds alone for this many iterations before the expander starts (0: from the first step, the paper)."),
    epochs: int = EpochsOpt,
    batch_size: int = BatchOpt,
    crop: int = CropOpt,
    rescale: str = RescaleOpt,
    lr: float = LrOpt,
    warmup: str = WarmupOpt,
    lr_step: float = LrStepOpt,
    lr_schedule: str = LrScheduleOpt,
    poly_power: float = PolyPowerOpt,
    repeat_enclosed_params: bool = RepeatEnclosedOpt,
    head_mult: float = HeadMultOpt,
    ema: float = EmaOpt,
    amp: bool = AmpOpt,
    tensorboard: bool = TensorboardOpt,
    keep_epochs: bool = KeepEpochsOpt,
    workers: int = WorkersOpt,
    nproc: int = NprocOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    resume: bool = TrainResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train the segmentation network on seeds expanded every iteration (DGCN)."""
    if nproc > 1:
        launch_distributed(nproc)
    cfg = _train_config(with_run_config(ctx, config, "train", TRAIN_FIELDS, dict(locals())))
    with progress_bar("train") as update:
        result = train_stage.run(cfg, progress=update)
    print_result(result)
    print_precision(cfg.run.out)


def _train_config(p: dict[str, Any]) -> train_stage.TrainConfig:
    require(p, "out_dir", "seeds")
    if p["seed_norm"] not in ("image", "batch"):
        raise typer.BadParameter(f"expected image or batch, got {p['seed_norm']!r}", param_hint="--seed-loss-norm")
    clip = None if p["boundary_clip"].strip().lower() == "none" else parse_range(p["boundary_clip"], "--boundary-clip")
    return train_stage.TrainConfig(
        run=run_config(p), seeds=p["seeds"], data=split_data(p, p["split"]),
        model=ModelConfig(p["backbone"], p["weights"], tuple(p["graph_layers"].split(",")) if p["graph_layers"] else None,
                          p["head"], p["freeze_bn"]),
        optim=optim_config(p),
        expander=p["expander"], expander_options=parse_options(p["expander_opt"]),
        boundary_loss=p["boundary"], boundary_weight=p["boundary_weight"], boundary_clip=clip,
        seed_loss_per_image=p["seed_norm"] == "image", crf_workers=p["crf_workers"], expand_after=p["expand_after"],
    )


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
        result = gcl_stage.run(cfg, progress=update)
    print_result(result)


_RETRAIN = retrain_stage.RETRAIN_OPTIM  # retrain's own schedule defaults (DSRG's)
_RETRAIN_FIELD = {f.name: f.default for f in dataclasses.fields(retrain_stage.RetrainConfig)}  # labelling, start


def retrain(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (pseudo_labels.h5 and checkpoints; needed unless --config)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, dir_okay=False, help="Label the split with this trained model (multi-scale + CRF); training starts from its weights (--init teacher)."),
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
    init: str = typer.Option(_RETRAIN_FIELD["init"], "--init", help="Start from the --checkpoint's weights (teacher: DSRG's retraining) or from --weights (weights: e.g. ImageNet)."),
    scales: str = typer.Option("0.75,1,1.25", "--scales", help="Scales for labelling."),
    combine: str = typer.Option(_RETRAIN_FIELD["combine"], "--combine", help="Labelling: logits summed over the scales (the published test) or softmax averaged."),
    flip: bool = typer.Option(_RETRAIN_FIELD["flip"], "--flip/--no-flip", help="Also the mirror of each scale when labelling (DSRG: no)."),
    crf: bool = typer.Option(True, "--crf/--no-crf", help="Dense CRF on the pseudo labels."),
    crf_workers: int = typer.Option(_RETRAIN_FIELD["crf_workers"], "--crf-workers", help="Processes running the labelling's CRFs (0: in the main process)."),
    epochs: int = typer.Option(_RETRAIN.epochs, "--epochs", help="Training epochs (DSRG: 20,000 iterations at batch 10, 19 epochs of VOC train_aug)."),
    batch_size: int = typer.Option(_RETRAIN.batch_size, "--batch-size", help="Images per batch (per process under DDP)."),
    crop: int = CropOpt,
    rescale: str = RescaleOpt,
    lr: float = typer.Option(_RETRAIN.lr, "--lr", help="Backbone learning rate (the head gets --head-lr-mult times it); DSRG: 1e-3."),
    warmup: str = typer.Option(str(_RETRAIN.warmup_iters), "--warmup", help="Warm-up: iterations, or a share of the run's iterations such as 5% (DSRG: none)."),
    lr_step: float = LrStepOpt,
    lr_schedule: str = typer.Option(_RETRAIN.lr_schedule, "--lr-schedule", help="Learning-rate decay: poly (DSRG's retraining, the default here) or step (x0.3 every --lr-step-epochs)."),
    poly_power: float = PolyPowerOpt,
    repeat_enclosed_params: bool = RepeatEnclosedOpt,
    head_mult: float = HeadMultOpt,
    ema: float = EmaOpt,
    amp: bool = AmpOpt,
    tensorboard: bool = TensorboardOpt,
    keep_epochs: bool = KeepEpochsOpt,
    workers: int = WorkersOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    nproc: int = NprocOpt,
    resume: bool = TrainResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train a network on proxy masks (from a trained model or labels.h5) with cross-entropy.

    By default as DSRG's second step, which the paper follows: the trained model labels the
    split (logits summed over 0.75/1/1.25, no flip, dense CRF), and training starts from that
    model's weights with lr 1e-3, poly decay, no warm-up, 19 epochs at batch 10. The earlier
    regime: --init weights --combine softmax --flip --lr-schedule step --lr 5e-4 --warmup 200
    --epochs 7 --batch-size 16."""
    if nproc > 1:
        launch_distributed(nproc)
    p = with_run_config(ctx, config, "retrain", RETRAIN_FIELDS, dict(locals()))
    require(p, "out_dir")
    cfg = retrain_stage.RetrainConfig(
        run=run_config(p), data=split_data(p, p["split"]),
        model=ModelConfig(p["backbone"], p["weights"], head=p["head"], freeze_bn=p["freeze_bn"]),
        optim=optim_config(p),
        checkpoint=p["checkpoint"], labels=p["labels"], scales=parse_scales(p["scales"]), combine=p["combine"],
        flip=p["flip"], crf=p["crf"], init=p["init"], crf_workers=p["crf_workers"],
    )
    with progress_bar("retrain") as update:
        result = retrain_stage.run(cfg, progress=update)
    print_result(result)
    print_precision(cfg.run.out)


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train))
    app.command("graphcut-label")(handle_errors(graphcut_label))
    app.command("retrain")(handle_errors(retrain))
