"""``inspect``: what an artifact or a checkpoint holds and where it came from, read from the
file alone: kind, content fingerprint, provenance and environment; for an artifact its schema,
image count and the first item's arrays, for a checkpoint its architecture and progress."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .core.io.artifacts import SCHEMAS, ArtifactReader
from .core.io.checkpoint import describe_checkpoint
from .core.io.files import write_json_atomic
from .core import options
from .core.options import opt
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class InspectConfig:
    paths: tuple[Path, ...] = opt(help="Artifact files (.h5) or checkpoints (.pt).", required=True, positional=True,
                                  repeat=True, metavar="FILE...")
    # kind and fingerprint only: no array is read
    brief: bool = opt(False, "One line per file: path, kind, content fingerprint (compare two runs with diff).")
    json_out: Optional[Path] = options.json_out_opt("every description")


def describe(path: Path, brief: bool = False) -> dict:
    """One file's description: ``describe_checkpoint`` for a ``.pt``, else the artifact's own
    (plus ``schema``, its arrays declared, and ``first_item``, the first image's arrays)."""
    path = Path(path)
    if path.suffix == ".pt":
        return describe_checkpoint(path)
    with ArtifactReader(path) as r:
        info = r.describe()
        if brief:
            return info
        info["schema"] = list(SCHEMAS[r.kind].describe())
        info["first_item"] = {}
        if r.ids:
            info["first_item"] = {"id": r.ids[0], **{k: f"{v.dtype} {tuple(v.shape)}" for k, v in r.arrays(r.ids[0]).items()}}
        return info


def run(cfg: InspectConfig, progress: Optional[Progress] = None) -> StageResult:
    infos = []
    for n, path in enumerate(cfg.paths):
        infos.append(describe(path, cfg.brief))
        if progress:
            progress(n + 1, len(cfg.paths))
    if cfg.json_out is None:
        return StageResult((), "", details=infos)
    write_json_atomic(Path(cfg.json_out), infos if len(infos) > 1 else infos[0], indent=2, default=str)
    return wrote(Path(cfg.json_out), details=infos)
