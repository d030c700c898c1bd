"""Safe reading of weight files and strict loading of them into a network.

Every weight file goes through ``torch.load(..., weights_only=True)``: a file
that needs arbitrary unpickling is refused rather than executed. Every load into
a network is strict: a file that does not fit fails with the names of a few
keys that differ, because a silent ``strict=False`` is how a run ends up
training from random weights while believing it started from ImageNet.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

WEIGHTS_HELP = "--weights takes 'none', 'imagenet' or a path to a .pth state dict"


def load_weights_file(path: str | Path) -> dict:
    """Load a ``torch.save``d dict of tensors (and plain containers) on the CPU.

    Only what ``weights_only=True`` accepts is read, so a hostile or foreign
    pickle is never executed; anything else raises ``CheckpointError``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path} ({WEIGHTS_HELP})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page long and suggests weights_only=False; keep only
        # what it refused. A corrupt or non-torch file lands here too.
        text = str(err)
        # torch words the refused global as "Unsupported global: GLOBAL x" or "unsupported
        # GLOBAL x whose module y is blocked", depending on version and on the global
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain containers (it needs "
                f"{found.group(1)}); refusing to unpickle it. Save a plain state_dict with "
                "torch.save(model.state_dict(), path)"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        reason = detail.group(1).strip() if detail else _plain_reason(text)
        raise CheckpointError(
            f"cannot read {path} as a plain torch weights file ({reason}); it is damaged, not "
            "a torch.save file, or needs unpickling that weights_only=True refuses"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a bad file
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"cannot read {path} as a torch weights file ({type(err).__name__}: {first})"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a dict of tensors (a state_dict)"
        )
    return dict(obj)


def _few(names: Iterable[str], n: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(names[:n])
    return shown + (f" (+{len(names) - n} more)" if len(names) > n else "")


def load_state_strict(
    module: nn.Module,
    state: Mapping[str, object],
    *,
    source: str,
    target: str = "the network",
    drop_keys: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``module`` with ``strict=True`` semantics.

    ``drop_keys`` are exact names of a pretrained model's classification head
    (e.g. torchvision's ``fc.weight``): the backbone has no such layer, and a
    file with or without them is equally acceptable. Nothing else is dropped.
    """
    drop = set(drop_keys)
    state = {k: v for k, v in state.items() if k not in drop}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{source} is not a plain state_dict: entries {_few(not_tensors)} are not tensors "
            "(a full training checkpoint? pass the network's state_dict only)"
        )
    expected = set(module.state_dict())
    missing = expected - set(state)
    unexpected = set(state) - expected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys, e.g. {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys, e.g. {_few(unexpected)}")
        raise CheckpointError(
            f"{source} does not match {target}: "
            + "; ".join(parts)
        )
    own = module.state_dict()
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = sorted(wrong)[0]
        raise CheckpointError(
            f"{source} does not match {target}: {len(wrong)} tensors have the wrong shape, e.g. {k} is "
            f"{tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the network"
        )
    module.load_state_dict(state, strict=True)


def _plain_reason(text: str) -> str:
    """The first line of torch's message that is not its advice to load unsafely."""
    unsafe = ("weights_only", "weights only load failed", "trust", "documentation", "safe_globals")
    for line in text.splitlines():
        line = line.strip()
        if line and not any(word in line.lower() for word in unsafe):
            return line
    return "refused by the safe loader"
