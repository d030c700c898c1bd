"""``saliency-bg``: its options are ``SaliencyConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import saliency_bg as saliency_stage

from .common import Command, print_result, progress_bar
from .config_options import config_command


def _saliency_bg(cfg: saliency_stage.SaliencyConfig) -> None:
    with progress_bar("saliency") as update:
        result = saliency_stage.run(cfg, progress=update)
    print_result(result)


saliency_bg = config_command(saliency_stage.SaliencyConfig, "saliency-bg", _saliency_bg, rerun=False,
                             doc="Saliency maps for background seeds: computed (MB+) or imported from PNGs.")

COMMAND = Command("saliency-bg", saliency_stage, saliency_bg)
