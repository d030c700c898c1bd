"""``train``: its options are ``TrainConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from pathlib import Path

from stages import train as train_stage

from .common import Command, print_result, progress_bar
from .config_options import config_command
from .training_options import NPROC, launch_distributed, print_precision


def _train(cfg: train_stage.TrainConfig, nproc: int) -> None:
    if nproc > 1:
        launch_distributed(nproc)
    with progress_bar("train") as update:
        result = train_stage.run(cfg, progress=update)
    print_result(result)
    print_precision(Path(cfg.run.out))


train = config_command(train_stage.TrainConfig, "train", _train, extra=(NPROC,),
                       doc="Train the segmentation network on seeds expanded every iteration (DGCN).")

COMMAND = Command("train", train_stage, train)
