"""``retrain``: its options are ``RetrainConfig``'s declared fields (``config_options``), with
``retrain``'s own defaults (DSRG's schedule)."""
from __future__ import annotations

from stages import retrain as retrain_stage

from .common import Command
from .config_options import stage_command
from .training_options import print_precision

DOC = """Train a network on proxy masks (from a trained model or labels.h5) with cross-entropy.

    By default as DSRG's second step, which the paper follows: the trained model labels the
    split (logits summed over 0.75/1/1.25, no flip, dense CRF), and training starts from that
    model's weights with lr 1e-3, poly decay, no warm-up, 19 epochs at batch 10. The earlier
    regime: --init weights --combine softmax --flip --lr-schedule step --lr 5e-4 --warmup 200
    --epochs 7 --batch-size 16."""

COMMAND = Command("retrain", retrain_stage, stage_command(
    retrain_stage, retrain_stage.RetrainConfig, "retrain", DOC,
    rerun=True, distributed=True, after=lambda cfg: print_precision(cfg.run.out)))
