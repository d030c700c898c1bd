"""``cam``: its options are ``CamConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from pathlib import Path

from stages import cam as cam_stage

from .common import Command
from .config_options import stage_command
from .training_options import print_precision


def _precision(cfg: cam_stage.CamConfig) -> None:
    if cfg.checkpoint is None:  # a classifier trained here
        print_precision(Path(cfg.run.out) / "classifier")


COMMAND = Command("cam", cam_stage, stage_command(
    cam_stage, cam_stage.CamConfig, "cam", "Train the classifier on image-level labels, then write multi-scale CAMs.",
    rerun=True, distributed=True, after=_precision))
