"""``demo-data``."""
from __future__ import annotations

from pathlib import Path

import typer

from stages import demo_data as demo_data_stage
from stages.core.datasets.demo import DemoConfig

from .common import Command, print_result


def demo_data(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the demo dataset to (VOC layout)."),
    seed: int = typer.Option(0, "--seed", help="Generator seed: the same seed gives the same images."),
    n_train: int = typer.Option(300, "--n-train", help="Training images."),
    n_val: int = typer.Option(100, "--n-val", help="Validation images."),
    size: int = typer.Option(128, "--size", help="Image side in pixels."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Write the synthetic demo dataset (VOC layout) to a folder."""
    cfg = demo_data_stage.DemoDataConfig(out=out_dir, demo=DemoConfig(seed=seed, n_train=n_train, n_val=n_val, size=size),
                                         overwrite=overwrite)
    print_result(demo_data_stage.run(cfg))


COMMAND = Command("demo-data", demo_data_stage, demo_data)
