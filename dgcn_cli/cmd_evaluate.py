"""``evaluate``."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from stages import evaluate as evaluate_stage
from stages.core.errors import DgcnError

from .common import CacheDirOpt, DataRootOpt, DatasetOpt, LabelsFileOpt, data_config, handle_errors, out, progress_bar


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def print_report(report: evaluate_stage.EvalReport, title: str) -> None:
    m = report.metrics
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, iou in zip(m.class_names, m.iou):
        table.add_row(name, _fmt(iou))
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{_fmt(m.miou)}")
    table.add_row("pixel acc", _fmt(m.pixel_acc))
    table.add_row("mean class acc", _fmt(m.mean_class_acc))
    table.add_row("fw IoU", _fmt(m.fwiou))
    table.add_row("precision (labelled px)", _fmt(m.precision))
    table.add_row("coverage (labelled px)", _fmt(m.coverage))
    out.print(table)
    if report.sweep:
        best = report.protocol["cam_bg_thresh"]
        out.print("CAM background threshold sweep: " + "  ".join(
            f"{'[bold]' if t == best else ''}{t:.2f}:{_fmt(v)}{'[/]' if t == best else ''}" for t, v in report.sweep))


def register(app: typer.Typer) -> None:
    register_report(app)

    @app.command("evaluate")
    @handle_errors
    def evaluate(
        source: Path = typer.Argument(..., exists=True, help="A seeds/labels/predictions/cams artifact (.h5) or a folder of <id>.png masks."),
        dataset: str = DatasetOpt,
        data_root: Optional[Path] = DataRootOpt,
        split: str = typer.Option("val", "--split", help="Split whose ground-truth masks are compared."),
        labels_file: Optional[Path] = LabelsFileOpt,
        cache_dir: Optional[Path] = CacheDirOpt,
        cam_bg_thresh: float = typer.Option(0.15, "--cam-bg-thresh", min=0.0, max=1.0, help="For CAMs: background score in the argmax."),
        sweep: bool = typer.Option(False, "--sweep", help="For CAMs: try thresholds 0.05..0.95 and report the best."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write every number and the protocol to this JSON file."),
    ) -> None:
        """mIoU, pixel accuracy, mean class accuracy, fwIoU, per-class IoU, precision and coverage."""
        cfg = evaluate_stage.EvaluateConfig(
            source=source,
            data=data_config(dataset, data_root, split, labels_file, cache_dir),
            cam_bg_thresh=cam_bg_thresh,
            sweep=sweep,
            json_out=json_out,
        )
        with progress_bar("evaluate") as update:
            report = evaluate_stage.run(cfg, progress=update)
        p = report.protocol
        print_report(report, f"{p['source_kind']} {source.name} vs {p['dataset']}/{p['split']} ({p['images']} images)")
        if json_out:
            out.print(f"wrote {json_out}")


_SEED_SUFFIX = re.compile(r"-s\d+(?=/|$)")


def _report_rows(files: list[Path], by_seed: bool) -> list[tuple[str, list[dict]]]:
    """(label, results) per row; with ``by_seed``, runs whose paths differ only in a
    ``-s<N>`` seed suffix form one row."""
    rows: dict[str, list[dict]] = {}
    for f in files:
        label = f"{f.parent.parent.name}/{f.stem}" if f.parent.name == "eval" else f.stem
        if by_seed:
            label = _SEED_SUFFIX.sub("", label)
        try:
            data = json.loads(f.read_text())
            data["protocol"]["split"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise DgcnError(f"{f} is not a result of `dgcn evaluate --json`") from None
        rows.setdefault(label, []).append(data)
    return list(rows.items())


def _mean_std(values: list[Optional[float]]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return _fmt(vals[0])
    return f"{100 * float(np.mean(vals)):.1f} ± {100 * float(np.std(vals, ddof=1)):.1f}"


def _protocol_note(p: dict) -> str:
    if p.get("source_kind") == "cams":
        best = " (best of sweep)" if p.get("cam_bg_thresh_selected_by_sweep") else ""
        return f"bg thresh {p.get('cam_bg_thresh')}{best}"
    return p.get("prediction_protocol", "")


def register_report(app: typer.Typer) -> None:
    @app.command("report")
    @handle_errors
    def report(
        files: list[Path] = typer.Argument(..., exists=True, help="JSON files written by `dgcn evaluate --json`."),
        by_seed: bool = typer.Option(False, "--by-seed", help="Merge runs that differ only in a -s<N> seed suffix: mean ± sample std."),
        out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the table as text to this file."),
    ) -> None:
        """One table over several `evaluate --json` results (seeds, proxy labels, predictions, ...)."""
        from rich.console import Console

        table = Table(title="dgcn results (%)" + (", mean ± std over seeds" if by_seed else ""))
        for col in ("result", "kind", "split", "images", "runs", "mIoU", "precision", "coverage", "protocol"):
            table.add_column(col, justify="left" if col in ("result", "kind", "split", "protocol") else "right")
        for label, results in _report_rows(files, by_seed):
            p = results[0]["protocol"]
            table.add_row(
                label, p.get("source_kind", "?"), p.get("split", "?"), str(p.get("images", "?")), str(len(results)),
                *(_mean_std([r.get(k) for r in results]) for k in ("miou", "precision", "coverage")),
                _protocol_note(p),
            )
        out.print(table)
        if out_file is not None:
            rec = Console(record=True, width=160)
            rec.print(table)
            out_file.parent.mkdir(parents=True, exist_ok=True)
            out_file.write_text(rec.export_text())
