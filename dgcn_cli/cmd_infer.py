"""``infer``: its options are ``InferConfig``'s declared fields (``config_options``); the
dataset options are used unless ``--images`` names a folder."""
from __future__ import annotations

from stages import infer as infer_stage

from .common import Command
from .config_options import stage_command

DOC = """Predict label maps with a trained segmentation network: multi-scale + flip, dense CRF.

    The images: a dataset split (--dataset, or DGCN_DATASET) or a folder (--images, which
    wins over DGCN_DATASET)."""

COMMAND = Command("infer", infer_stage, stage_command(infer_stage, infer_stage.InferConfig, "infer", DOC))
