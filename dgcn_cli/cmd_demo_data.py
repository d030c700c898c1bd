"""``demo-data``: its options are ``DemoDataConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import demo_data as demo_data_stage

from .common import Command
from .config_options import stage_command

COMMAND = Command("demo-data", demo_data_stage, stage_command(
    demo_data_stage, demo_data_stage.DemoDataConfig, "demo-data", "Write the synthetic demo dataset (VOC layout) to a folder."))
