"""The identity expander: train on the seeds alone (the ablation without expansion)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import EXPANDERS, Expander, ExpanderConfig


@dataclass
class NoneConfig(ExpanderConfig):
    """``none`` takes no options."""


@EXPANDERS.register("none")
class NoneExpander(Expander):
    """Returns the seeds unchanged (as int64); features and probabilities are ignored."""

    name = "none"
    config_class = NoneConfig

    def _expand(self, features, probs, seeds, present):
        return seeds.long()
