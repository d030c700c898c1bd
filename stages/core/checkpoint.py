"""Full-state checkpoints, written atomically and read without running code.

A checkpoint is a dict of tensors and plain Python data: ``model`` (state
dict), ``model_config`` (what rebuilds the network), ``optimizer``,
``scheduler``, ``epoch``, ``iteration``, ``rng`` and the run's ``config``.
Loading uses ``torch.load(weights_only=True)``, so a file that needs
arbitrary objects is refused rather than unpickled.
"""
from __future__ import annotations

import os
import pickle
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
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsupported object"
        raise CheckpointError(
            f"{path}: refused: it holds objects beyond tensors and plain data ({first[:120]}); "
            "only weights-only checkpoints are loaded"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise CheckpointError(f"{path}: not a dgcn checkpoint (no 'model'/'model_config' entries)")
    return state


def load_model_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Strict load; a mismatch names the first differing keys instead of loading half a model."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} of another shape (e.g. {k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
