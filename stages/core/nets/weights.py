"""Backbone weights: downloaded (where allowed) or read from a file through
:mod:`..io.weights_file` (safe reading, strict loading), which this module re-exports."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DgcnError
from ..io.weights_file import WEIGHTS_HELP, load_state_strict, load_weights_file

__all__ = ["WEIGHTS_HELP", "download_state", "load_state_strict", "load_weights_file"]


def download_state(url: str, *, backbone: str) -> dict:
    """Fetch torchvision ImageNet weights through the torch hub cache.

    With no network the first use fails; the message names the exact file and
    the cache folder, so the user can copy it there or pass it by path.
    """
    file_name = url.rsplit("/", 1)[-1]
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as err:  # noqa: BLE001 - any failure here means "no usable file"
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DgcnError(
            f"could not get ImageNet weights for {backbone}: {file_name} is not in {cache} and "
            f"downloading {url} failed ({type(err).__name__}: {reason}); put {file_name} in "
            f"{cache} or pass --weights /path/to/{file_name}"
        ) from None
    return dict(state)


