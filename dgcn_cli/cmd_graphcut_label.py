"""``graphcut-label``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import graphcut_label as gcl_stage

from .common import (
    CacheDirOpt,
    Command,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    ExpanderOpt,
    ExpanderOptsOpt,
    LabelsFileOpt,
    OverwriteOpt,
    ResumeOpt,
    data_config,
    parse_options,
    print_result,
    progress_bar,
)


def graphcut_label(
    checkpoint: Path = typer.Option(..., "--checkpoint", exists=True, help="Segmentation checkpoint from `dgcn train`."),
    seeds: Path = typer.Option(..., "--seeds", exists=True, dir_okay=False, help="seeds.h5 for the same split."),
    out_file: Path = typer.Option(..., "--out", help="labels.h5 to write."),
    dataset: Optional[str] = DatasetOpt,
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


COMMAND = Command('graphcut-label', gcl_stage, graphcut_label)
