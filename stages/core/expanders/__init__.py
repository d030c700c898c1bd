"""Seed expanders: turn sparse seeds into the supervision a segmentation step trains on.

Every expander is called the same way::

    exp = build_expander("graphcut", k=9, theta=0.7)     # paper defaults for the rest
    out = exp(features, probs, seeds, present)
    exp.close()                                          # or: with build_expander(...) as exp:

- ``features``: float (B, C, h, w) node features at the score-map size (None is
  fine for ``dsrg`` and ``none``), on the CPU or CUDA;
- ``probs``: float (B, K+1, h, w) softmax probabilities, channel 0 = background;
- ``seeds``: integer (B, h, w), 0 = background, 1..K = classes, 255 = unlabelled;
- ``present``: bool (B, K+1) image-level labels, background always True;
- returns int64 (B, h, w) on the device of ``seeds``: 0..K, or 255 for no supervision;
  or, from ``graphcut``, bool (B, K+1, h, w) multi-hot supervision (the published rule
  lets the cut for class c override a seed where H_c > theta, so a position can carry
  two classes or lose its seed): ``to_label_map`` gives one label per position.
  ``dsrg``, ``labelprop`` and ``none`` never relabel a seed.

Registered: ``graphcut`` (DGCN), ``dsrg`` (DSRG's region growing), ``labelprop``
(Zhou et al. 2004) and ``none`` (the seeds themselves).
"""
from __future__ import annotations

from typing import Any

from .base import (
    EXPANDERS,
    IGNORE,
    Expander,
    ExpanderConfig,
    ExpanderOptionError,
    to_image_size,
    to_label_map,
)
from .dsrg import DSRGConfig, DSRGExpander
from .graphcut import GraphCutConfig, GraphCutExpander
from .labelprop import LabelPropConfig, LabelPropExpander
from .none import NoneConfig, NoneExpander


def build_expander(name: str, **options: Any) -> Expander:
    """The expander registered as ``name``, its options given as keywords (defaults: the paper's).

    Raises ``UnknownNameError`` for an unknown name and ``ExpanderOptionError`` for an
    unknown option or an invalid value; both messages list what is accepted.
    """
    cls = EXPANDERS.get(name)
    return cls(check_expander_options(name, options))


def check_expander_options(name: str, options: Any) -> ExpanderConfig:
    """The expander's config from ``options`` (a mapping), refusing a bad name, option or value
    with one line; stage configs call it so a bad option fails before any input is read."""
    cls = EXPANDERS.get(name)
    return cls.config_class.from_kwargs(name, **dict(options))


__all__ = [
    "EXPANDERS",
    "IGNORE",
    "DSRGConfig",
    "DSRGExpander",
    "Expander",
    "ExpanderConfig",
    "ExpanderOptionError",
    "GraphCutConfig",
    "GraphCutExpander",
    "LabelPropConfig",
    "LabelPropExpander",
    "NoneConfig",
    "NoneExpander",
    "build_expander",
    "check_expander_options",
    "to_image_size",
    "to_label_map",
]
