"""The one shape of every stage: ``run(cfg, progress=None) -> StageResult``.

A stage's config checks its own values when it is built (so the Python API refuses what
the CLI refuses, with the same line); ``run`` reports progress through one callback,
``progress(done, total, info="")``, and returns the files it wrote, the lines the CLI
prints, warnings about what it skipped, and (for ``evaluate``, ``report`` and ``infer``)
the stage's own numbers in ``details``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

Progress = Callable[..., None]  # progress(done: int, total: int, info: str = "")


@dataclass(frozen=True)
class StageResult:
    paths: tuple[Path, ...]  # what the stage wrote (or found already finished), first the main one
    summary: str  # one or more lines for a person: what was done and where it went
    warnings: tuple[str, ...] = ()  # what was skipped or looks wrong, one line each
    details: Any = None  # the stage's own result object, where it has one

    @property
    def path(self) -> Path:
        return self.paths[0]


def wrote(*paths: Path, warnings: tuple[str, ...] = (), details: Any = None, summary: Optional[str] = None) -> StageResult:
    """The result of a stage whose summary is the files it wrote."""
    paths = tuple(Path(p) for p in paths)
    text = summary if summary is not None else "\n".join(f"wrote {p}" for p in paths)
    return StageResult(paths, text, tuple(warnings), details)
