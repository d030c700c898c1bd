"""``seeds``: its options are ``SeedsConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import seeds as seeds_stage

from .common import Command, print_result, progress_bar
from .config_options import config_command


def _seeds(cfg: seeds_stage.SeedsConfig) -> None:
    with progress_bar("seeds") as update:
        result = seeds_stage.run(cfg, progress=update)
    print_result(result)


seeds = config_command(seeds_stage.SeedsConfig, "seeds", _seeds, rerun=False,
                       doc="Fuse CAMs and a background cue into seed maps, or import seeds from DSRG/IRN files.")

COMMAND = Command("seeds", seeds_stage, seeds)
