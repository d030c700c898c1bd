"""``saliency-bg``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import saliency_bg as saliency_stage
from stages.core.cues.saliency import SALIENCY

from .common import (
    CacheDirOpt,
    Command,
    DataRootOpt,
    DatasetOpt,
    LabelsFileOpt,
    OverwriteOpt,
    ResumeOpt,
    WorkersOpt,
    data_config,
    print_result,
    progress_bar,
)


def saliency_bg(
    out_file: Path = typer.Option(..., "--out", help="saliency.h5 to write."),
    dataset: Optional[str] = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Dataset split to process."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    method: str = typer.Option("mbd", "--method", help=f"Saliency method: {', '.join(SALIENCY.names())}."),
    from_dir: Optional[Path] = typer.Option(None, "--from-dir", help="Import <id>.png maps (0-255, 255 = salient) from another tool, e.g. DRFI."),
    workers: int = WorkersOpt,
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Saliency maps for background seeds: computed (MB+) or imported from PNGs."""
    cfg = saliency_stage.SaliencyConfig(
        out=out_file, data=data_config(dataset, data_root, split, labels_file, cache_dir),
        method=method, from_dir=from_dir, overwrite=overwrite, resume=resume, workers=workers,
    )
    with progress_bar("saliency") as update:
        result = saliency_stage.run(cfg, progress=update)
    print_result(result)


COMMAND = Command('saliency-bg', saliency_stage, saliency_bg)
