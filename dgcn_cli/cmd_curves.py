"""``curves``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import curves as curves_stage

from .common import Command, print_result, progress_bar


def curves(
    runs: list[Path] = typer.Argument(..., metavar="RUN_DIR...", help="Run folders of `dgcn train`, `retrain` or `cam` (its classifier/ folder), each holding metrics.jsonl."),
    out_path: Path = typer.Option(..., "--out", help="PNG file to write (replaced if it exists)."),
    labels: Optional[list[str]] = typer.Option(None, "--label", help="Legend name of each run, in order (repeat once per run). Default: parent/name of each folder."),
    width: int = typer.Option(1200, "--width", help="Picture width in px."),
    height: Optional[int] = typer.Option(None, "--height", help=f"Picture height in px. Default: {curves_stage.ROW_HEIGHT} per row of two panels."),
    smooth: int = typer.Option(5, "--smooth", help="Centred moving average over this many logged points (odd); 1 draws raw values only."),
) -> None:
    """A PNG of training curves: loss terms, supervised pixels, learning rate and the validation score (mIoU, or the classifier's mAP) against iteration, runs overlaid."""
    cfg = curves_stage.CurvesConfig(
        runs=tuple(runs), out=out_path, labels=tuple(labels or ()), width=width, height=height, smooth=smooth,
    )
    with progress_bar("curves") as update:
        result = curves_stage.run(cfg, progress=update)
    print_result(result)


COMMAND = Command('curves', curves_stage, curves)
