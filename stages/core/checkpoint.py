"""Full-state checkpoints, written atomically and read without running code.

A checkpoint is a dict of tensors and plain Python data: ``model`` (state
dict), ``model_config`` (what rebuilds the network), ``optimizer``,
``scheduler``, ``epoch``, ``iteration``, ``rng`` and the run's ``config``.
Loading uses ``torch.load(weights_only=True)``, so a file that needs
arbitrary objects is refused rather than unpickled.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import CheckpointError


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A dgcn checkpoint, read with the same weights-only loader as any weights file."""
    from .nets.weights import load_weights_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = load_weights_file(path)
    if "model" not in state or "model_config" not in state:
        raise CheckpointError(f"{path}: not a dgcn checkpoint (no 'model'/'model_config' entries)")
    return state


def load_model_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Strict load; a mismatch names the first differing keys instead of loading half a model."""
    from .nets.weights import load_state_strict

    load_state_strict(model, state_dict, source=str(source), target="the model")
