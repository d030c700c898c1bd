"""``graphcut-label``: its options are ``GraphcutLabelConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import graphcut_label as gcl_stage

from .common import Command, print_result, progress_bar
from .config_options import config_command


def _graphcut_label(cfg: gcl_stage.GraphcutLabelConfig) -> None:
    with progress_bar("graphcut-label") as update:
        result = gcl_stage.run(cfg, progress=update)
    print_result(result)


graphcut_label = config_command(gcl_stage.GraphcutLabelConfig, "graphcut-label", _graphcut_label, rerun=False,
                                doc="Proxy labels: a trained network's probabilities and features expand the seeds.")

COMMAND = Command("graphcut-label", gcl_stage, graphcut_label)
