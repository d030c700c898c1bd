"""``curves``: a PNG of the training curves in run folders' ``metrics.jsonl``.

Every run folder of ``dgcn cam``, ``train`` and ``retrain`` logs one JSON object a line:
step records (``iteration``, ``epoch``, ``lr``, ``loss`` and the stage's own float stats)
every few iterations, and epoch records (``iteration``, ``epoch``, ``val_*``) after each
validation. The picture has one panel per quantity any of the runs logged, the runs
overlaid in one colour each, iteration on the x axis (an epoch's validation at the epoch's
last iteration). Step series are drawn raw and faint, with a centred moving average over
``smooth`` logged points on top.

A ``--resume`` from an earlier checkpoint appends records for iterations the file already
holds; the records logged after that checkpoint belong to the abandoned attempt, so from
the first repeated iteration on, the later attempt's records replace the earlier ones.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .core import checks
from .core.errors import DgcnError
from .core.io.files import atomic_path
from .core.options import opt
from .core.stage import Progress, StageResult, wrote

METRICS_FILE = "metrics.jsonl"
INDEX_KEYS = ("iteration", "epoch")
VAL_PREFIX = "val_"
DPI = 100
ROW_HEIGHT = 300  # px per row of panels when no height is given
HEADER_HEIGHT = 90  # px for the legend and the x label
WIDTH_RANGE = (400, 8000)
HEIGHT_RANGE = (200, 8000)
PANEL_TITLES = {
    "loss": "loss",
    "lr": "learning rate",
    "supervised": "supervised pixels (%)",
    "added": "unseeded pixels labelled (%)",
    "seeds_changed": "seeded pixels changed (%)",
    "seed_grad_share": "seeds' share of the seed-loss gradient (%)",
    "val_miou": "val mIoU (%)",
    "val_map": "val mAP (%)",
}
PERCENT_KEYS = ("supervised", "added", "seeds_changed", "seed_grad_share", "val_miou", "val_map")  # logged as fractions
PNG_PANELS_KEY = "dgcn panels"  # PNG text chunk listing the drawn panels' titles


class MetricsError(DgcnError):
    """A run folder without ``metrics.jsonl``, or a metrics file that cannot be read."""


@dataclass(frozen=True)
class CurvesConfig:
    runs: tuple[Path, ...] = opt(help="Run folders of `dgcn train`, `retrain` or `cam` (its classifier/ folder), each "
                                      "holding metrics.jsonl.", required=True, positional=True, repeat=True,
                                 metavar="RUN_DIR...")
    out: Path = opt(help="PNG file to write (replaced if it exists).", required=True)
    labels: tuple[str, ...] = opt((), "Legend name of each run, in order (repeat once per run). Default: parent/name of "
                                      "each folder.", flag="--label", repeat=True)
    width: int = opt(1200, "Picture width in px.")
    # None: ROW_HEIGHT per row of panels plus the legend
    height: Optional[int] = opt(None, f"Picture height in px. Default: {ROW_HEIGHT} per row of two panels.")
    # logged points in the centred moving average (odd; even rounds down)
    smooth: int = opt(5, "Centred moving average over this many logged points (odd); 1 draws raw values only.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(Path(p) for p in self.runs))
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "out", Path(self.out))
        checks.number("--width", self.width, lo=WIDTH_RANGE[0], hi=WIDTH_RANGE[1], integer=True)
        if self.height is not None:
            checks.number("--height", self.height, lo=HEIGHT_RANGE[0], hi=HEIGHT_RANGE[1], integer=True)
        checks.number("--smooth", self.smooth, lo=1, hi=1000, integer=True)
        _check_out(self.out)
        _check_runs(self.runs)
        _check_labels(self.labels, len(self.runs))


def _check_out(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise checks.OptionError(f"--out {out} must be a .png file")
    if out.is_dir():
        raise checks.OptionError(f"--out {out} is a folder; give a .png file name")


def _check_runs(runs: Sequence[Path]) -> None:
    if not runs:
        raise checks.OptionError("give at least one run folder")
    seen: set[Path] = set()
    for run in runs:
        path = metrics_path(run).resolve()
        if path in seen:
            raise checks.OptionError(f"run folder {run} is given twice")
        seen.add(path)


def _check_labels(labels: Sequence[str], n_runs: int) -> None:
    if not labels:
        return
    if len(labels) != n_runs:
        raise checks.OptionError(f"got {len(labels)} --label for {n_runs} run folder(s); give one per run folder, or none")
    if any(not label.strip() for label in labels):
        raise checks.OptionError("--label must not be empty")
    if len(set(labels)) != len(labels):
        raise checks.OptionError(f"--label names must differ, got {', '.join(labels)}")


def metrics_path(run: Path) -> Path:
    """``run``'s metrics file; ``run`` may also name the file itself."""
    run = Path(run)
    if run.is_file() and run.name == METRICS_FILE:
        return run
    if not run.exists():
        raise MetricsError(f"run folder {run} does not exist")
    path = run / METRICS_FILE
    if not path.is_file():
        # e.g. the cam output or a whole pipeline run: name the run folders it holds
        inside = sorted(str(p.parent) for p in run.glob(f"*/{METRICS_FILE}")) if run.is_dir() else []
        hint = (f"; the run folders inside it are {', '.join(inside)}" if inside else
                ": give a run folder of `dgcn train`, `retrain` or `cam` (its classifier/ folder)")
        raise MetricsError(f"{run} has no {METRICS_FILE}{hint}")
    return path


def default_labels(runs: Sequence[Path]) -> tuple[str, ...]:
    """parent/name of each run folder, or the paths as given where two of those coincide."""
    folders = [p.parent if p.name == METRICS_FILE else p for p in map(Path, runs)]
    short = ["/".join(p.resolve().parts[-2:]) for p in folders]
    if len(set(short)) == len(short):
        return tuple(short)
    return tuple(str(p) for p in folders)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Series:
    x: tuple[int, ...]  # iterations, increasing
    y: tuple[float, ...]  # NaN where a logged value was not finite
    epoch: tuple[int, ...] = ()  # for epoch series: the (0-based) epoch of each point


@dataclass(frozen=True)
class RunCurves:
    source: Path
    steps: dict[str, Series]  # loss, lr and the stage's stats, in the order first logged
    epochs: dict[str, Series]  # val_miou (and any other val_*), one point per epoch
    restarts: int = 0  # how often the iterations went back (a resume from an earlier checkpoint)
    replaced: int = 0  # records dropped because a later attempt logged the same iterations
    warnings: tuple[str, ...] = ()

    @property
    def last_iteration(self) -> int:
        return max((s.x[-1] for s in (*self.steps.values(), *self.epochs.values()) if s.x), default=0)


def _parse_line(raw: bytes, where: str) -> dict:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MetricsError(f"{where} is not UTF-8 text; delete or repair that line") from None
    except json.JSONDecodeError as err:
        raise MetricsError(f"{where} is not a JSON record ({err.msg}); delete or repair that line") from None
    if not isinstance(record, dict):
        raise MetricsError(f"{where} holds a JSON {type(record).__name__}, not a record; delete or repair that line")
    return record


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_record(record: dict, where: str) -> None:
    for key in INDEX_KEYS:
        v = record.get(key, 0 if key == "epoch" else None)
        if not (_is_number(v) and float(v).is_integer() and v >= 0):
            raise MetricsError(f"{where} has no valid {key!r} (got {v!r}); delete or repair that line")
    for key, v in record.items():
        if key not in INDEX_KEYS and not _is_number(v):
            raise MetricsError(f"{where}: {key!r} is {v!r}, not a number; delete or repair that line")


def _records(path: Path, warnings: list[str]) -> list[dict]:
    """The file's records in file order, each checked; a last line cut short without its
    newline (a run stopped while writing) is skipped with a warning."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {n}"
        try:
            record = _parse_line(raw, where)
        except MetricsError:
            if n == len(lines):  # no newline after it: the write never finished
                warnings.append(f"{path}: skipped line {n}, cut short (the run stopped while writing it, or is writing it now)")
                continue
            raise
        _check_record(record, where)
        records.append(record)
    if not records:
        raise MetricsError(f"{path} holds no records: the run has not logged anything yet")
    return records


def read_metrics(path: Path) -> RunCurves:
    """Parse a run folder's (or the file's) metrics, keeping the later attempt's records
    wherever a resume repeated iterations."""
    path = metrics_path(Path(path))
    warnings: list[str] = []
    steps, vals, restarts, replaced = _latest_attempt(_records(path, warnings))
    step_series, bad = _series(steps)
    val_series, bad_val = _series(vals, with_epoch=True)
    for key, its in {**bad, **bad_val}.items():
        shown = ", ".join(map(str, its[:5])) + (" ..." if len(its) > 5 else "")
        warnings.append(f"{path}: {key} is not finite at iteration(s) {shown}; drawn as a gap")
    return RunCurves(path, step_series, val_series, restarts, replaced, tuple(warnings))


def _latest_attempt(records: list[dict]) -> tuple[dict[int, dict], dict[int, dict], int, int]:
    """(step records, val records) by iteration, the restart count and the number of records
    replaced. A step record at or below an iteration already logged starts a new attempt:
    everything logged from that iteration on came from the abandoned one."""
    steps: dict[int, dict] = {}
    vals: dict[int, dict] = {}
    restarts = replaced = 0
    for record in records:
        it = int(record["iteration"])
        is_val = any(k.startswith(VAL_PREFIX) for k in record)
        if not is_val and steps and it <= max(steps):
            stale = [(d, i) for d in (steps, vals) for i in d if i >= it]
            for d, i in stale:
                del d[i]
            restarts += 1
            replaced += len(stale)
        elif is_val and it in vals:  # resumed from a checkpoint after the last logged step: no step repeats
            replaced += 1
        (vals if is_val else steps)[it] = record
    return steps, vals, restarts, replaced


def _series(records: dict[int, dict], with_epoch: bool = False) -> tuple[dict[str, Series], dict[str, list[int]]]:
    """One series per logged key over ``records`` (iteration -> record), and the iterations
    where a key's value was not finite (drawn as a gap)."""
    keys: dict[str, None] = {}
    for it in sorted(records):
        keys.update(dict.fromkeys(k for k in records[it] if k not in INDEX_KEYS))
    out, bad = {}, {}
    for key in keys:
        its = [it for it in sorted(records) if key in records[it]]
        ys = [float(records[it][key]) for it in its]
        if not all(math.isfinite(y) for y in ys):
            bad[key] = [it for it, y in zip(its, ys) if not math.isfinite(y)]
        epochs = tuple(int(records[it].get("epoch", 0)) for it in its) if with_epoch else ()
        out[key] = Series(tuple(its), tuple(y if math.isfinite(y) else math.nan for y in ys), epochs)
    return out, bad


# ---------------------------------------------------------------- panels


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    scale: float = 1.0  # 100 for fractions shown in percent
    per_epoch: bool = False  # val_* series: markers, no smoothing
    log_y: bool = False


def _title(key: str, total: bool) -> str:
    if key == "loss" and total:
        return "loss (total)"
    return PANEL_TITLES.get(key, key.replace("_", " "))


def plan_panels(curves: Sequence[RunCurves]) -> list[Panel]:
    """One panel per quantity any run logged: loss, the other loss terms, the other stats,
    learning rate, then the per-epoch validation scores."""
    step_keys: dict[str, None] = {}
    val_keys: dict[str, None] = {}
    for c in curves:
        step_keys.update(dict.fromkeys(c.steps))
        val_keys.update(dict.fromkeys(c.epochs))
    terms = [k for k in step_keys if "loss" in k and k != "loss"]
    order = (["loss"] if "loss" in step_keys else []) + terms
    order += [k for k in step_keys if k not in order and k != "lr"] + (["lr"] if "lr" in step_keys else [])
    panels = [Panel(k, _title(k, bool(terms)), 100.0 if k in PERCENT_KEYS else 1.0, log_y=k == "lr") for k in order]
    panels += [Panel(k, _title(k, False), 100.0 if k in PERCENT_KEYS else 1.0, per_epoch=True) for k in val_keys]
    return panels


def smoothing_window(smooth: int) -> int:
    """The odd number of points a centred mean over ``smooth`` points really uses."""
    return 2 * ((smooth - 1) // 2) + 1


def moving_average(y: np.ndarray, smooth: int) -> np.ndarray:
    """Centred mean over ``smoothing_window(smooth)`` points, the window shrinking
    symmetrically near the ends so the first and last points stay where they were logged
    (a one-sided window there would pull a falling loss's start down). NaNs are left out."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    half = np.minimum((smooth - 1) // 2, np.minimum(np.arange(n), n - 1 - np.arange(n)))
    ok = np.isfinite(y)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    lo, hi = np.arange(n) - half, np.arange(n) + half + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[hi] - sums[lo]) / (counts[hi] - counts[lo])
    return np.where(ok, mean, np.nan)


# ---------------------------------------------------------------- drawing


def figure_size(cfg: CurvesConfig, n_panels: int) -> tuple[int, int, int]:
    """(width, height, columns) in px of the picture for ``n_panels`` panels."""
    cols = 1 if n_panels <= 1 else 2
    rows = math.ceil(n_panels / cols)
    height = cfg.height if cfg.height is not None else rows * ROW_HEIGHT + HEADER_HEIGHT
    return cfg.width, height, cols


def _draw_panel(ax, panel: Panel, curves: Sequence[RunCurves], colors: Sequence, smooth: int) -> None:
    for c, color in zip(curves, colors):
        series = (c.epochs if panel.per_epoch else c.steps).get(panel.key)
        if series is None or not series.x:
            continue
        x, y = np.asarray(series.x), np.asarray(series.y) * panel.scale
        if panel.per_epoch:
            ax.plot(x, y, color=color, marker="o", markersize=3.5, linewidth=1.5)
        elif smoothing_window(smooth) > 1 and panel.key != "lr" and len(y) >= 3:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=1)
            ax.plot(x, moving_average(y, smooth), color=color, linewidth=1.6)
        else:
            ax.plot(x, y, color=color, linewidth=1.6, marker="o" if len(y) == 1 else None, markersize=3.5)
    ax.set_title(panel.title, fontsize=10)
    values = [v for c in curves for v in c.steps.get(panel.key, Series((), ())).y if math.isfinite(v)]
    if panel.log_y and values and min(values) > 0:
        _log_scale(ax)
    ax.grid(True, alpha=0.3)
    ax.tick_params(which="both", labelsize=8)


def _log_scale(ax) -> None:
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    # plain 2e-03 labels on the minor ticks too: a schedule often spans less than a decade
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _note(smooth: int, panels: Sequence[Panel]) -> str:
    parts = ["iteration"]
    window = smoothing_window(smooth)
    if window > 1 and any(not p.per_epoch and p.key != "lr" for p in panels):
        parts.append(f"lines: centred moving average over {window} logged points, faint: raw values")
    if any(p.per_epoch for p in panels):
        parts.append("val: single-scale, at each epoch's last iteration")
    return "   |   ".join(parts)


def draw(curves: Sequence[RunCurves], labels: Sequence[str], cfg: CurvesConfig, path: Path) -> list[str]:
    """Draw the panels and save the PNG to ``path``; returns the panel titles as drawn."""
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,  # lazy: only this stage needs it
    )
    from matplotlib.figure import Figure

    panels = plan_panels(curves)
    width, height, cols = figure_size(cfg, len(panels))
    rows = math.ceil(len(panels) / cols)
    # a half pixel over, so the float figure size never rounds down to one px less
    fig = Figure(figsize=((width + 0.5) / DPI, (height + 0.5) / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
    colors = [f"C{i % 10}" for i in range(len(curves))]
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, curves, colors, cfg.smooth)
    for i in range(len(panels), len(axes)):
        axes[i].remove()
        # the shared x axis labels only the bottom row: the panel above a gap is a bottom now
        axes[i - cols].xaxis.set_tick_params(labelbottom=True)
    handles = [_legend_line(color) for color in colors]
    fig.legend(handles, list(labels), loc="outside upper center", ncols=min(len(labels), 4), fontsize=9, frameon=False)
    fig.supxlabel(_note(cfg.smooth, panels), fontsize=8)
    titles = [ax.get_title() for ax in fig.axes]  # what the figure really holds
    fig.savefig(path, format="png", dpi=DPI, metadata={PNG_PANELS_KEY: json.dumps(titles)})
    return titles


def _legend_line(color):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linewidth=2)


# ---------------------------------------------------------------- stage


def run(cfg: CurvesConfig, progress: Optional[Progress] = None) -> StageResult:
    """Read every run's metrics, draw them and write ``cfg.out`` (PNG, atomically); what could
    not be drawn (cut-short lines, non-finite values) comes back as warnings."""
    labels = cfg.labels or default_labels(cfg.runs)
    total = len(cfg.runs) + 1
    curves = []
    for i, (run_dir, label) in enumerate(zip(cfg.runs, labels)):
        curves.append(read_metrics(run_dir))
        if progress:
            progress(i + 1, total, info=label)
    out = cfg.out
    with atomic_path(out) as tmp:
        draw(curves, labels, cfg, tmp)
    if progress:
        progress(total, total, info=str(out))
    return wrote(out, warnings=tuple(m for c in curves for m in c.warnings))
