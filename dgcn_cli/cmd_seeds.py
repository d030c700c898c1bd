"""``seeds``: its options are ``SeedsConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import seeds as seeds_stage

from .common import Command
from .config_options import stage_command

COMMAND = Command("seeds", seeds_stage, stage_command(seeds_stage, seeds_stage.SeedsConfig, "seeds",
                                                   "Fuse CAMs and a background cue into seed maps, or import seeds from DSRG/IRN files."))
