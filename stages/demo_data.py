"""``demo-data``: the synthetic demo dataset (shapes on textures, VOC layout) that ``make demo``
and the tests run on; the same seed gives the same images."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .core.datasets.demo import DemoConfig, write_demo_dataset
from .core.options import opt
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class DemoDataConfig:
    out: Path = opt(help="Folder to write the demo dataset to (VOC layout).", required=True)
    demo: DemoConfig = field(default_factory=DemoConfig)
    overwrite: bool = opt(False, "Replace an existing folder.")


def run(cfg: DemoDataConfig, progress: Optional[Progress] = None) -> StageResult:
    path = write_demo_dataset(cfg.out, cfg.demo, overwrite=cfg.overwrite)
    return wrote(path, summary=f"demo dataset written to {path} ({cfg.demo.n_train} train, {cfg.demo.n_val} val images)")
