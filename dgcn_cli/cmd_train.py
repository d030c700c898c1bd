"""``train``: its options are ``TrainConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import train as train_stage

from .common import Command
from .config_options import stage_command
from .training_options import print_precision

COMMAND = Command("train", train_stage, stage_command(
    train_stage, train_stage.TrainConfig, "train", "Train the segmentation network on seeds expanded every iteration (DGCN).",
    rerun=True, distributed=True, after=lambda cfg: print_precision(cfg.run.out)))
