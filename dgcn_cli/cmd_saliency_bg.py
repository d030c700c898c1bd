"""``saliency-bg``: its options are ``SaliencyConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import saliency_bg as saliency_stage

from .common import Command
from .config_options import stage_command

COMMAND = Command("saliency-bg", saliency_stage, stage_command(saliency_stage, saliency_stage.SaliencyConfig, "saliency-bg",
                                                   "Saliency maps for background seeds: computed (MB+) or imported from PNGs."))
