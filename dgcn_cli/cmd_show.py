"""``show``: its options are ``ShowConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import show as show_stage

from .common import Command, print_result, progress_bar
from .config_options import config_command


def _show(cfg: show_stage.ShowConfig) -> None:
    with progress_bar("show") as update:
        result = show_stage.run(cfg, progress=update)
    print_result(result)


show = config_command(show_stage.ShowConfig, "show", _show, rerun=False,
                      doc="A PNG grid: images next to their CAMs, saliency, seeds, proxy labels, predictions and ground truth.")

COMMAND = Command("show", show_stage, show)
