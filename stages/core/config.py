"""Pieces of configuration shared by several stages, and the hash of the options that define a run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping


def to_jsonable(obj: Any) -> Any:
    """A dataclass config as plain JSON data (paths as strings), for artifact provenance."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj


# keys that never change what a run computes: resuming or rerunning may change them
RUNTIME_KEYS = ("resume", "overwrite", "workers", "device", "crf_workers", "nproc", "out", "cache_dir", "tensorboard",
                "keep_epochs")

# settings added after runs and files were recorded, with the value every one of those had:
# a key holding that value is left out of the hash, so what was made before the setting
# existed keeps its fingerprint and still resumes (any other value makes another run)
ADDED_DEFAULTS: dict[str, Any] = {"lr_schedule": "step", "poly_power": 0.9, "repeat_enclosed_params": False}


def config_fingerprint(config: Mapping[str, Any], ignore: Iterable[str] = ()) -> str:
    """A hash of the options that define a run (not of those that only say how to run it).

    ``ignore`` names keys dropped at any depth (``run.resume`` as well as ``crf_workers``), as
    are the ``ADDED_DEFAULTS`` keys that hold their default.
    """
    drop = set(ignore)

    def dropped(key: str, value: Any) -> bool:
        return key in drop or (key in ADDED_DEFAULTS and value == ADDED_DEFAULTS[key])

    def keep(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: keep(v) for k, v in value.items() if not dropped(k, v)}
        return value

    return hashlib.sha256(json.dumps(keep(config), sort_keys=True, default=str).encode()).hexdigest()[:16]
