"""``train``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from stages import train as train_stage
from stages.core.train.segmenter import ModelConfig

from .common import (
    CacheDirOpt,
    Command,
    CrfWorkersOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    ExpanderOpt,
    ExpanderOptsOpt,
    LabelsFileOpt,
    OverwriteOpt,
    SeedOpt,
    TrainResumeOpt,
    WorkersOpt,
    backbone_option,
    parse_options,
    parse_range,
    print_result,
    progress_bar,
)
from .run_config import TRAIN_FIELDS, require, with_run_config
from .training_options import (
    AmpOpt,
    BatchOpt,
    ConfigOpt,
    CropOpt,
    EmaOpt,
    EpochsOpt,
    FreezeBnOpt,
    HeadMultOpt,
    HeadOpt,
    KeepEpochsOpt,
    LrOpt,
    LrScheduleOpt,
    LrStepOpt,
    NprocOpt,
    PolyPowerOpt,
    RepeatEnclosedOpt,
    RescaleOpt,
    TensorboardOpt,
    ValSplitOpt,
    WarmupOpt,
    launch_distributed,
    optim_config,
    print_precision,
    run_config,
    split_data,
)


def train(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder: config.json, metrics.jsonl, last.pt, best.pt, final.pt (needed unless --config)."),
    seeds: Optional[Path] = typer.Option(None, "--seeds", exists=True, dir_okay=False, help="seeds.h5 from `dgcn seeds` (needed unless --config)."),
    dataset: Optional[str] = DatasetOpt,
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
    crf_workers: int = CrfWorkersOpt,
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


COMMAND = Command('train', train_stage, train)
