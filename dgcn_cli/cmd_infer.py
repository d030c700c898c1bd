"""``infer``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from stages import infer as infer_stage
from stages.core import options
from stages.core.predict.segmenter import TEST_SCALES

from .common import (
    CacheDirOpt,
    Command,
    CrfWorkersOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    LabelsFileOpt,
    OverwriteOpt,
    ResumeOpt,
    WorkersOpt,
    data_config,
    print_result,
    progress_bar,
)


def infer(
    ctx: typer.Context,
    checkpoint: Path = typer.Option(..., "--checkpoint", exists=True, dir_okay=False, help="Segmentation checkpoint from `dgcn train` or `dgcn retrain`."),
    dataset: Optional[str] = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("val", "--split", help="Split to predict (with --dataset)."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    images: Optional[Path] = typer.Option(None, "--images", exists=True, file_okay=False, help="A folder of images (any size; JPEG, PNG, ...) instead of a dataset; id = file name stem."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: pred.h5 and png/<id>.png."),
    scales: str = typer.Option(",".join(f"{s:g}" for s in TEST_SCALES), "--scales", help="Test scales, comma-separated."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Also average over horizontal mirrors."),
    combine: str = typer.Option("softmax", "--combine", help="softmax: mean of per-scale softmaxes; logits: logits summed over scales, one softmax (the published evaluate.py)."),
    crf: bool = typer.Option(True, "--crf/--no-crf", help="Dense CRF at full image size (the paper's protocol)."),
    save_probs: bool = typer.Option(False, "--save-probs", help="Also store class probabilities (float16, C x H x W) in pred.h5."),
    png: bool = typer.Option(True, "--png/--no-png", help="Write VOC-coloured palette PNGs to <out>/png."),
    voc_results: Optional[Path] = typer.Option(None, "--voc-results", file_okay=False, help="With --dataset voc: also write each prediction as DIR/results/VOC2012/Segmentation/comp6_<split>_cls/<id>.png, the layout the VOC evaluation server takes (upload a tar of DIR/results); how --split test is scored."),
    batch_size: int = typer.Option(1, "--batch-size", help="Images per batch; images of the same size share forward passes."),
    workers: int = WorkersOpt,
    crf_workers: int = CrfWorkersOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Predict label maps with a trained segmentation network: multi-scale + flip, dense CRF.
    The images: a dataset split (--dataset, or DGCN_DATASET) or a folder (--images, which
    wins over DGCN_DATASET)."""
    if images is not None and getattr(ctx.get_parameter_source("dataset"), "name", "") == "ENVIRONMENT":
        dataset = None
    given = dict(locals())
    # the options named as InferConfig's fields go over as they are; the rest are read here
    same = {f.name for f in dataclasses.fields(infer_stage.InferConfig)} - {"out", "data", "scales"}
    cfg = infer_stage.InferConfig(
        out=out_dir, scales=options.floats(scales, "--scales"),
        data=data_config(dataset, data_root, split, labels_file, cache_dir) if dataset is not None else None,
        **{name: given[name] for name in same},
    )
    with progress_bar("infer") as update:
        result = infer_stage.run(cfg, progress=update)
    print_result(result)


COMMAND = Command('infer', infer_stage, infer)
