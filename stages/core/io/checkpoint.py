"""Full-state checkpoints, written atomically and read without running code.

A checkpoint is a dict of tensors and plain Python data: ``kind`` (``classifier``
from ``cam``, ``segmenter`` from ``train``/``retrain``), ``model`` (state
dict), ``model_config`` (the architecture: what rebuilds the network), ``optimizer``,
``scheduler``, ``epoch``, ``iteration``, ``rng``, the run's ``config``, and (since they
were recorded) the ``environment`` it was trained in and the ``precision`` of its steps.
Loading uses ``torch.load(weights_only=True)``, so a file that needs
arbitrary objects is refused rather than unpickled.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError, DiskFullError
from ..units import size_text
from . import files
from .files import atomic_path
from .weights_file import load_state_strict, load_weights_file

# free space kept in hand beyond the checkpoint's own size (zip headers, the pickled rest)
CHECKPOINT_RESERVE = 16 * 2**20


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to a temporary file and rename it over ``path``: the previous
    checkpoint stays whole until the new one is. A disk too full for it is one line, checked
    before writing (the tensors' bytes) and caught from the write itself."""
    path = Path(path)
    need = _tensor_bytes(state) + CHECKPOINT_RESERVE
    free = files.free_space(path.parent) if path.parent.is_dir() else None
    if free is not None and free < need:
        raise _disk_full(path, need, free)
    try:
        with atomic_path(path) as tmp:
            torch.save(dict(state), tmp)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
        if files.is_disk_full(err) or _now_too_full(path, need):
            raise _disk_full(path, need, None) from None
        raise


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _now_too_full(path: Path, need: int) -> bool:
    # torch's message for a failed write does not always carry ENOSPC: ask the disk
    try:
        return files.free_space(path.parent) < need
    except OSError:
        return False


def _disk_full(path: Path, need: int, free: int | None) -> DiskFullError:
    if free is None:
        try:
            free = files.free_space(path.parent)
        except OSError:
            free = None
    has = f", {size_text(free)} free" if free is not None else ""
    kept = f"{path} keeps the previous checkpoint" if path.exists() else "no checkpoint was written"
    return DiskFullError(f"disk full: saving {path} needs about {size_text(need)}{has} ({kept}); "
                         "free space and rerun with --resume")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A dgcn checkpoint, read with the same weights-only loader as any weights file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = load_weights_file(path)
    if "model" not in state or "model_config" not in state:
        raise CheckpointError(f"{path}: not a dgcn checkpoint (no 'model'/'model_config' entries)")
    return state


def load_model_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Strict load; a mismatch names the first differing keys instead of loading half a model."""
    load_state_strict(model, state_dict, source=str(source), target="the model")


#: checkpoint kind -> the commands that make it
CHECKPOINT_KINDS = {"classifier": "`dgcn cam`", "segmenter": "`dgcn train` or `dgcn retrain`"}


def checkpoint_kind(state: Mapping[str, Any]) -> str:
    """The recorded kind; checkpoints written before kinds were recorded are told apart by
    their architecture (only a segmenter has graph layers)."""
    kind = state.get("kind")
    if kind in CHECKPOINT_KINDS:
        return str(kind)
    mc = state.get("model_config")
    return "segmenter" if isinstance(mc, Mapping) and "graph_layers" in mc else "classifier"


def require_kind(state: Mapping[str, Any], kind: str, path: Path | str) -> None:
    found = checkpoint_kind(state)
    if found != kind:
        raise CheckpointError(
            f"{path} is a {found} checkpoint (from {CHECKPOINT_KINDS[found]}); this needs a {kind} "
            f"checkpoint from {CHECKPOINT_KINDS[kind]}"
        )


def weights_fingerprint(weights: Mapping[str, Any]) -> str:
    """A hash of a state dict's names, dtypes, shapes and values: equal for bit-identical
    weights whatever their memory layout or device (as an artifact's ``fingerprint`` is for
    its arrays), so two runs can be compared without loading them side by side."""
    h = hashlib.sha256()
    for key in sorted(weights):
        value = weights[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype} {tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:16]


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """What ``dgcn inspect`` shows of a checkpoint: kind, architecture, progress and provenance."""
    state = load_checkpoint(path)
    config = state.get("config") if isinstance(state.get("config"), Mapping) else {}
    weights = state["model"]
    return {
        "path": str(path),
        "kind": checkpoint_kind(state),
        "architecture": dict(state["model_config"]),
        "iteration": state.get("iteration"),
        "epoch": state.get("epoch"),
        "finished": Path(path).name == "final.pt",
        "weight_average": "train_model" in state,
        "parameters": int(sum(v.numel() for v in weights.values() if hasattr(v, "numel"))),
        "fingerprint": weights_fingerprint(weights),
        "precision": state.get("precision"),  # None: made before it was recorded
        "environment": state.get("environment"),
        "earlier_environments": list(state.get("earlier_environments") or []),
        "config": dict(config),
    }
