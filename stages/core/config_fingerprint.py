"""Hashing the options that define a run, apart from those that only say how to run it."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

# keys that never change what a run computes: resuming or rerunning may change them
RUNTIME_KEYS = ("resume", "overwrite", "workers", "device", "crf_workers", "nproc", "out", "cache_dir")


def config_fingerprint(config: Mapping[str, Any], ignore: Iterable[str] = ()) -> str:
    """A hash of the options that define a run (not of those that only say how to run it).

    ``ignore`` names keys dropped at any depth (``run.resume`` as well as ``crf_workers``).
    """
    drop = set(ignore)

    def keep(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: keep(v) for k, v in value.items() if k not in drop}
        return value

    return hashlib.sha256(json.dumps(keep(config), sort_keys=True, default=str).encode()).hexdigest()[:16]
