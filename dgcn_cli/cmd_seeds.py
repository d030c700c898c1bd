"""``seeds``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import seeds as seeds_stage
from stages.core.cues.seeding import FusionConfig

from .common import (
    CacheDirOpt,
    Command,
    DataRootOpt,
    DatasetOpt,
    LabelsFileOpt,
    OverwriteOpt,
    ResumeOpt,
    data_config,
    print_result,
    progress_bar,
)


def seeds(
    out_file: Path = typer.Option(..., "--out", help="seeds.h5 to write."),
    dataset: Optional[str] = DatasetOpt,
    data_root: Optional[Path] = DataRootOpt,
    split: str = typer.Option("train", "--split", help="Dataset split to process."),
    labels_file: Optional[Path] = LabelsFileOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    cams: Optional[Path] = typer.Option(None, "--cams", help="cams.h5 from `dgcn cam`."),
    saliency: Optional[Path] = typer.Option(None, "--saliency", help="saliency.h5 from `dgcn saliency-bg`."),
    bg_source: str = typer.Option("saliency", "--bg-source", help="saliency, or cam: background where every CAM is low."),
    fg_thresh: float = typer.Option(FusionConfig.fg_thresh, "--fg-thresh", help="A class seeds where its normalised CAM reaches this."),
    bg_sal_thresh: float = typer.Option(FusionConfig.bg_sal_thresh, "--bg-sal-thresh", help="Background where saliency is below this."),
    bg_cam_thresh: float = typer.Option(FusionConfig.bg_cam_thresh, "--bg-cam-thresh", help="With --bg-source cam: background where every CAM is below this."),
    fg_sal_thresh: float = typer.Option(FusionConfig.fg_sal_thresh, "--fg-sal-thresh", help="A class seeds only where saliency also reaches this (0: off); where the CAM fires on non-salient pixels they stay unlabelled."),
    from_dsrg: Optional[Path] = typer.Option(None, "--from-dsrg", help="Import DSRG's localization_cues-sal.pickle (its 41x41 cues over the whole image, stored at the image's size), as the published code reads it: a pixel cued for two classes takes the higher class index."),
    dsrg_list: Optional[Path] = typer.Option(None, "--dsrg-list", help="With --from-dsrg: the published code's input_list.txt ('IMAGE.jpg INDEX' lines), whose indices key DSRG's cues ('0_labels', '0_cues'). Not needed for a pickle keyed by image id."),
    dsrg_overlap: str = typer.Option("higher", "--dsrg-overlap", help="With --from-dsrg, a pixel cued for two classes: higher (its higher class index, the published loader's result) or unlabelled (255)."),
    from_irn: Optional[Path] = typer.Option(None, "--from-irn", help="Use IRN-style <id>.npy CAM dictionaries from this folder instead of --cams."),
    resume: bool = ResumeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Fuse CAMs and a background cue into seed maps, or import seeds from DSRG/IRN files."""
    cfg = seeds_stage.SeedsConfig(
        out=out_file, data=data_config(dataset, data_root, split, labels_file, cache_dir),
        cams=cams, saliency=saliency,
        fusion=FusionConfig(fg_thresh=fg_thresh, bg_source=bg_source, bg_sal_thresh=bg_sal_thresh, bg_cam_thresh=bg_cam_thresh,
                              fg_sal_thresh=fg_sal_thresh),
        from_dsrg=from_dsrg, dsrg_list=dsrg_list, dsrg_overlap=dsrg_overlap, from_irn=from_irn, overwrite=overwrite, resume=resume,
    )
    with progress_bar("seeds") as update:
        result = seeds_stage.run(cfg, progress=update)
    print_result(result)


COMMAND = Command('seeds', seeds_stage, seeds)
