"""``show``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import show as show_stage

from .common import (
    CacheDirOpt,
    Command,
    DataRootOpt,
    DatasetOpt,
    LabelsFileOpt,
    SeedOpt,
    data_config,
    print_result,
    progress_bar,
)


def _split_ids(text: Optional[str]) -> tuple[str, ...]:
    return tuple(i.strip() for i in (text or "").split(",") if i.strip())


def show(
    out_path: Path = typer.Option(..., "--out", help="PNG file to write (replaced if it exists)."),
    dataset: Optional[str] = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Split whose images are shown."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    cams: Optional[Path] = typer.Option(None, "--cams", help="cams.h5 from `dgcn cam`: one heatmap column per present class."),
    saliency: Optional[Path] = typer.Option(None, "--saliency", help="saliency.h5 from `dgcn saliency-bg`."),
    seeds: Optional[Path] = typer.Option(None, "--seeds", help="seeds.h5 from `dgcn seeds` (or imported cues)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labels.h5 (proxy labels) from `dgcn graphcut-label`."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="pred.h5 from `dgcn infer`."),
    gt: Optional[bool] = typer.Option(None, "--gt/--no-gt", help="Ground-truth column. Default: shown when the split has masks."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated image ids, one row each (overrides --n)."),
    n: int = typer.Option(4, "--n", help="How many images (the split's first ones unless --random)."),
    random: bool = typer.Option(False, "--random", help="Pick --n images at random (reproducible with --seed)."),
    seed: int = SeedOpt,
    overlay: bool = typer.Option(False, "--overlay", help="Draw label maps as colour overlays on the image."),
    alpha: float = typer.Option(0.5, "--alpha", help="Opacity of the --overlay colours."),
    tile: int = typer.Option(160, "--tile", help="Cell size in px (longer side of each panel)."),
) -> None:
    """A PNG grid: images next to their CAMs, saliency, seeds, proxy labels, predictions and ground truth."""
    cfg = show_stage.ShowConfig(
        out=out_path,
        data=data_config(dataset, data_root, split, labels_file, cache_dir),
        cams=cams,
        saliency=saliency,
        seeds=seeds,
        labels=labels,
        pred=pred,
        gt=gt,
        ids=_split_ids(ids),
        n=n,
        random=random,
        seed=seed,
        overlay=overlay,
        alpha=alpha,
        tile=tile,
    )
    with progress_bar("show") as update:
        result = show_stage.run(cfg, progress=update)
    print_result(result)


COMMAND = Command('show', show_stage, show)
