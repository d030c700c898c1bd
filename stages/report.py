"""``report``: one table over several ``dgcn evaluate --json`` results.

Rows are named from what the evaluated artifacts record about themselves (``made_by`` in
the evaluation's protocol: the artifact's kind and, for network-made artifacts, the
training run's stage, expander, seed and teacher), not from where the files lie: a table
reads the same whatever folder layout a pipeline uses. Results written before artifacts
recorded this fall back to a name from the file path. With ``by_seed``, rows that differ
only in their training seed merge into one (mean and sample standard deviation). Results whose
artifacts were made in different environments (another dgcn commit, torch or device; see
``provenance``) get a warning: a table is comparable only where the code that made it is.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .core import provenance
from .core.errors import DgcnError
from .core.io.files import write_text_atomic
from .core.options import opt
from .core.stage import Progress, StageResult, wrote

# obj recall / obj prec.: the object classes pooled against background (see metrics)
COLUMNS = ("result", "kind", "split", "images", "runs", "mIoU", "precision", "coverage", "obj recall", "obj prec.",
           "protocol")
_METRICS = ("miou", "precision", "coverage", "object_recall", "object_precision")


@dataclass(frozen=True)
class ReportConfig:
    files: tuple[Path, ...] = opt(help="JSON files written by `dgcn evaluate --json`.", required=True, positional=True,
                                  repeat=True, exists=True, metavar="JSON...")
    by_seed: bool = opt(False, "Merge rows that differ only in their training seed: mean ± sample std.")
    per_class: bool = opt(False, "Also a table of per-class IoU (mean over a row's runs).")
    out: Optional[Path] = opt(None, "Also write the table as text to this file.")

    def __post_init__(self) -> None:
        if not self.files:
            raise DgcnError("report needs at least one result of `dgcn evaluate --json`")


@dataclass(frozen=True)
class ReportRow:
    name: str
    kind: str
    split: str
    images: str
    results: tuple[dict, ...]  # one per merged run
    protocol: str

    def cells(self) -> tuple[str, ...]:
        metrics = tuple(mean_std([r.get(k) for r in self.results]) for k in _METRICS)
        return (self.name, self.kind, self.split, self.images, str(len(self.results)), *metrics, self.protocol)


@dataclass(frozen=True)
class Report:
    title: str
    rows: tuple[ReportRow, ...]
    per_class: bool = False

    def class_names(self) -> list[str]:
        """Classes scored in any row (a class absent from a split's ground truth has no IoU)."""
        names: dict[str, None] = {}
        for row in self.rows:
            for r in row.results:
                for name, iou in (r.get("per_class_iou") or {}).items():
                    if iou is not None:
                        names.setdefault(name, None)
        return list(names)


def read_result(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        data["protocol"]["split"]
    except OSError as err:
        raise DgcnError(f"cannot read {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise DgcnError(f"{path} is not a result of `dgcn evaluate --json`") from None
    return data


def expander_name(expander: Any, options: Any) -> str:
    """'graphcut', or 'graphcut (cut_background=false)' with options given."""
    if not isinstance(options, Mapping) or not options:
        return str(expander)
    return f"{expander} ({', '.join(f'{k}={_option(v)}' for k, v in sorted(options.items()))})"


def _option(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def model_name(model: Mapping[str, Any]) -> str:
    """'train graphcut', 'retrain from train graphcut', ... from ``run_provenance``."""
    if model.get("stage") == "retrain":
        teacher = model.get("teacher")
        start = " (fresh start)" if model.get("init") == "weights" else ""  # the default starts from the teacher
        return "retrain" + start + (f" from {model_name(teacher)}" if isinstance(teacher, Mapping) and teacher else "")
    expander = expander_name(model["expander"], model.get("expander_options")) if model.get("expander") else None
    return " ".join(str(p) for p in (model.get("stage", "network"), expander) if p)


def row_name(result: Mapping[str, Any], path: Path, with_seed: bool = True) -> str:
    made_by = result["protocol"].get("made_by")
    if not isinstance(made_by, Mapping):
        return _path_name(path)
    kind, model = made_by.get("kind"), made_by.get("model") or {}
    if kind == "cams":
        name = "CAMs"
    elif kind == "seeds":
        name = "seeds"
    elif kind == "labels" and made_by.get("expander"):
        labelled = expander_name(made_by["expander"], made_by.get("expander_options"))
        trained = expander_name(model["expander"], model.get("expander_options")) if model.get("expander") else None
        name = f"proxy labels: {labelled}"
        if trained and trained != labelled:
            name += f" (network trained with {trained})"
    elif kind == "labels" and model:
        name = f"pseudo labels of {model_name(model)}"
    elif kind == "predictions" and model:
        name = model_name(model)
    else:
        return _path_name(path)
    if with_seed and "seed" in model:
        name += f" s{model['seed']}"
    return name


def _path_name(path: Path) -> str:
    path = Path(path)
    return f"{path.parent.parent.name}/{path.stem}" if path.parent.name == "eval" else path.stem


def mean_std(values: Sequence[Optional[float]]) -> str:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{100 * vals[0]:.1f}"
    return f"{100 * float(np.mean(vals)):.1f} ± {100 * float(np.std(vals, ddof=1)):.1f}"


def protocol_note(p: Mapping[str, Any]) -> str:
    if p.get("source_kind") == "cams":
        best = " (best of sweep)" if p.get("cam_bg_thresh_selected_by_sweep") else ""
        return f"bg thresh {p.get('cam_bg_thresh')}{best}"
    return str(p.get("prediction_protocol", ""))


def build_rows(files: Sequence[Path], by_seed: bool) -> list[ReportRow]:
    """Rows in the order of their first file; a name shared by results that are not to be
    merged (two different sources, or the same seed twice) gets its file path added."""
    named: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    for f in files:
        result = read_result(f)
        key = (row_name(result, f, with_seed=not by_seed), result["protocol"].get("split", "?"))
        named.setdefault(key, []).append((Path(f), result))
    rows = []
    for (name, split), group in named.items():
        seeds = [_seed(r) for _, r in group]
        clash = len(group) > 1 and (not by_seed or len(set(seeds)) < len(seeds))
        parts = [[item] for item in group] if clash else [group]
        for part in parts:
            label = f"{name} [{_path_name(part[0][0])}]" if clash else name
            p = part[0][1]["protocol"]
            rows.append(ReportRow(label, str(p.get("source_kind", "?")), str(split), str(p.get("images", "?")),
                                  tuple(r for _, r in part), protocol_note(p)))
    return rows


def _seed(result: Mapping[str, Any]) -> Any:
    made_by = result["protocol"].get("made_by") or {}
    return (made_by.get("model") or {}).get("seed")


def render(report: Report, width: int = 190) -> str:
    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO())
    for t in tables(report):
        console.print(t)
    return console.export_text()


def tables(report: Report) -> list:
    """The main table, and with ``per_class`` the per-class IoU table."""
    return [table(report), *([class_table(report)] if report.per_class else [])]


def class_table(report: Report):
    """Per-class IoU (%) of each row: the mean over the row's runs, '-' where a class was not
    scored (absent from that split's ground truth)."""
    from rich.markup import escape
    from rich.table import Table

    names = report.class_names()
    t = Table(title="per-class IoU (%)" + (", mean over seeds" if any(len(r.results) > 1 for r in report.rows) else ""))
    t.add_column("result", justify="left")
    t.add_column("split", justify="left")
    for name in names:
        t.add_column(name, justify="right")
    for row in report.rows:
        cells = []
        for name in names:
            vals = [(r.get("per_class_iou") or {}).get(name) for r in row.results]
            vals = [v for v in vals if v is not None]
            cells.append(f"{100 * float(np.mean(vals)):.1f}" if vals else "-")
        t.add_row(escape(row.name), row.split, *cells)
    return t


def table(report: Report):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=report.title)
    for col in COLUMNS:
        t.add_column(col, justify="left" if col in ("result", "kind", "split", "protocol") else "right")
    for row in report.rows:
        # escaped: a clashing row's "[file]" suffix would otherwise be read as rich markup and vanish
        t.add_row(*(escape(c) for c in row.cells()))
    return t


_SAME_ENVIRONMENT = ("dgcn", "git_commit", "python", "torch", "cuda", "cudnn")


def mixed_environments(files: Sequence[Path]) -> Optional[str]:
    """A warning when the evaluated artifacts record more than one environment (results made
    before environments were recorded say nothing and are left out)."""
    seen: dict[str, None] = {}
    for f in files:
        env = read_result(f).get("source_environment")
        if isinstance(env, Mapping) and env:
            # the code and libraries only: not the dirty flag (it says a tree had uncommitted
            # changes, not which, and a tree being edited flips it between two steps), not the
            # device (CPU-only steps such as saliency record the CPU on a GPU machine)
            seen[provenance.one_line({k: v for k, v in env.items() if k in _SAME_ENVIRONMENT})] = None
    if len(seen) < 2:
        return None
    shown = list(seen)[:3]
    more = f"; and {len(seen) - 3} more" if len(seen) > 3 else ""
    return f"the evaluated files were made in {len(seen)} environments: {'; '.join(shown)}{more}"


def run(cfg: ReportConfig, progress: Optional[Progress] = None) -> StageResult:
    """One table over ``evaluate --json`` results; ``details`` is the ``Report``."""
    rows = tuple(build_rows(cfg.files, cfg.by_seed))
    title = "dgcn results (%)" + (", mean ± std over seeds" if cfg.by_seed else "")
    report = Report(title, rows, cfg.per_class)
    mixed = mixed_environments(cfg.files)
    warnings = (mixed,) if mixed else ()
    if progress:
        progress(len(cfg.files), len(cfg.files))
    if cfg.out is None:
        return StageResult((), "", warnings, details=report)
    write_text_atomic(Path(cfg.out), render(report))
    return wrote(Path(cfg.out), warnings=warnings, details=report)
