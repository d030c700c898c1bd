"""``cam``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from stages import cam as cam_stage
from stages.core.train.classifier import ClassifierConfig

from .common import (
    CacheDirOpt,
    Command,
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
from .run_config import CAM_FIELDS, require, with_run_config
from .training_options import (
    AmpOpt,
    BatchOpt,
    ConfigOpt,
    CropOpt,
    EmaOpt,
    HeadMultOpt,
    KeepEpochsOpt,
    LrScheduleOpt,
    LrStepOpt,
    NprocOpt,
    PolyPowerOpt,
    RepeatEnclosedOpt,
    TensorboardOpt,
    ValSplitOpt,
    launch_distributed,
    optim_config,
    print_precision,
    run_config,
    split_data,
)

_CAM = cam_stage.CAM_OPTIM  # the classifier's own schedule defaults


def _cam_config(p: dict[str, Any]) -> cam_stage.CamConfig:
    require(p, "out_dir")
    return cam_stage.CamConfig(
        run=run_config(p), data=split_data(p, p["split"]),
        model=ClassifierConfig(p["backbone"], p["weights"], p["freeze_backbone"]),
        optim=optim_config(p),
        cam_splits=tuple(p["cam_split"]), checkpoint=p["checkpoint"], scales=parse_scales(p["scales"]),
    )


def cam(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder: the classifier's run in classifier/, then cams_<split>.h5 (needed unless --config)."),
    dataset: Optional[str] = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Split the classifier trains on."),
    cam_split: list[str] = typer.Option([], "--cam-split", help="Split(s) to write CAMs for (repeatable). Default: --split."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    val_split: Optional[str] = ValSplitOpt,
    backbone: str = backbone_option("tiny"),
    weights: str = typer.Option("none", "--weights", help="Backbone initialisation: imagenet, none, or a weights file."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, help="Use this classifier (from a previous `dgcn cam`) instead of training."),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone/--train-backbone", help="Train only the class layer on the pretrained backbone's fixed features (BatchNorm statistics included)."),
    epochs: int = typer.Option(_CAM.epochs, "--epochs", help="Training epochs."),
    batch_size: int = BatchOpt,
    crop: int = CropOpt,
    rescale: str = typer.Option(",".join(f"{s:g}" for s in _CAM.scale_range), "--rescale", help="Random rescale range LO,HI before the crop; 1 = none."),
    lr: float = typer.Option(_CAM.lr, "--lr", help="Backbone learning rate (the class layer gets --head-lr-mult times it)."),
    warmup: str = typer.Option(str(_CAM.warmup_iters), "--warmup", help="Warm-up: iterations, or a share of the run's iterations such as 5%."),
    lr_step: float = LrStepOpt,
    lr_schedule: str = LrScheduleOpt,
    poly_power: float = PolyPowerOpt,
    repeat_enclosed_params: bool = RepeatEnclosedOpt,
    head_mult: float = HeadMultOpt,
    ema: float = EmaOpt,
    amp: bool = AmpOpt,
    scales: str = typer.Option("0.5,1,1.5,2", "--scales", help="CAM scales (each also flipped)."),
    tensorboard: bool = TensorboardOpt,
    keep_epochs: bool = KeepEpochsOpt,
    workers: int = WorkersOpt,
    nproc: int = NprocOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    resume: bool = TrainResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train the classifier on image-level labels, then write multi-scale CAMs."""
    if nproc > 1:
        launch_distributed(nproc)
    cfg = _cam_config(with_run_config(ctx, config, "cam", CAM_FIELDS, dict(locals())))
    with progress_bar("cam") as update:
        result = cam_stage.run(cfg, progress=update)
    print_result(result)
    if cfg.checkpoint is None:
        print_precision(Path(cfg.run.out) / "classifier")


COMMAND = Command('cam', cam_stage, cam)
