"""``retrain``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from stages import retrain as retrain_stage
from stages.core.train.segmenter import ModelConfig

from .common import (
    CacheDirOpt,
    Command,
    CrfWorkersOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    LabelsFileOpt,
    OverwriteOpt,
    SeedOpt,
    TrainResumeOpt,
    WorkersOpt,
    backbone_option,
    parse_scales,
    print_result,
    progress_bar,
)
from .run_config import RETRAIN_FIELDS, require, with_run_config
from .training_options import (
    AmpOpt,
    ConfigOpt,
    CropOpt,
    EmaOpt,
    FreezeBnOpt,
    HeadMultOpt,
    HeadOpt,
    KeepEpochsOpt,
    LrStepOpt,
    NprocOpt,
    PolyPowerOpt,
    RepeatEnclosedOpt,
    RescaleOpt,
    TensorboardOpt,
    ValSplitOpt,
    launch_distributed,
    optim_config,
    print_precision,
    run_config,
    split_data,
)

_RETRAIN = retrain_stage.RETRAIN_OPTIM  # retrain's own schedule defaults (DSRG's)
_RETRAIN_FIELD = {f.name: f.default for f in dataclasses.fields(retrain_stage.RetrainConfig)}  # labelling, start


def retrain(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (pseudo_labels.h5 and checkpoints; needed unless --config)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, dir_okay=False, help="Label the split with this trained model (multi-scale + CRF); training starts from its weights (--init teacher)."),
    labels: Optional[Path] = typer.Option(None, "--labels", exists=True, dir_okay=False, help="Or train on these proxy labels (labels.h5)."),
    dataset: Optional[str] = DatasetOpt,
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
    crf_workers: int = CrfWorkersOpt,
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


COMMAND = Command('retrain', retrain_stage, retrain)
