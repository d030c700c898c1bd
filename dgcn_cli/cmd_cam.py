"""``cam``: its options are ``CamConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from pathlib import Path

from stages import cam as cam_stage

from .common import Command, print_result, progress_bar
from .config_options import config_command
from .training_options import NPROC, launch_distributed, print_precision


def _cam(cfg: cam_stage.CamConfig, nproc: int) -> None:
    if nproc > 1:
        launch_distributed(nproc)
    with progress_bar("cam") as update:
        result = cam_stage.run(cfg, progress=update)
    print_result(result)
    if cfg.checkpoint is None:
        print_precision(Path(cfg.run.out) / "classifier")


cam = config_command(cam_stage.CamConfig, "cam", _cam, extra=(NPROC,),
                     doc="Train the classifier on image-level labels, then write multi-scale CAMs.")

COMMAND = Command("cam", cam_stage, cam)
