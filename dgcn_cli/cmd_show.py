"""``show``: its options are ``ShowConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import show as show_stage

from .common import Command
from .config_options import stage_command

COMMAND = Command("show", show_stage, stage_command(show_stage, show_stage.ShowConfig, "show",
                                                   "A PNG grid: images next to their CAMs, saliency, seeds, proxy labels, predictions and ground truth."))
