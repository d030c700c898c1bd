"""``graphcut-label``: its options are ``GraphcutLabelConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import graphcut_label as gcl_stage

from .common import Command
from .config_options import stage_command

COMMAND = Command("graphcut-label", gcl_stage, stage_command(gcl_stage, gcl_stage.GraphcutLabelConfig, "graphcut-label",
                                                   "Proxy labels: a trained network's probabilities and features expand the seeds."))
