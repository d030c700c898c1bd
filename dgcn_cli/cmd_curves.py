"""``curves``: its options are ``CurvesConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import curves as curves_stage

from .common import Command
from .config_options import stage_command

DOC = ("A PNG of training curves: loss terms, supervised pixels, learning rate and the validation score (mIoU, or "
       "the classifier's mAP) against iteration, runs overlaid.")

COMMAND = Command("curves", curves_stage, stage_command(curves_stage, curves_stage.CurvesConfig, "curves", DOC))
