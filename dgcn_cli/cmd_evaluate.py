"""``evaluate``: its options are ``EvaluateConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from rich.table import Table

from stages import evaluate as evaluate_stage

from .common import Command, json_to_stdout, out, print_result, progress_bar
from .config_options import config_command


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
    if not np.isnan(m.object_recall):
        table.add_section()
        table.add_row("object recall (classes pooled)", _fmt(m.object_recall))
        table.add_row("object precision", _fmt(m.object_precision))
        table.add_row("object share of px (truth)", f"{_fmt(m.object_share)} ({_fmt(m.object_share_gt)})")
    out.print(table)
    if report.sweep:
        best = report.protocol["cam_bg_thresh"]
        out.print("CAM background threshold sweep: " + "  ".join(
            f"{'[bold]' if t == best else ''}{t:.2f}:{_fmt(v)}{'[/]' if t == best else ''}" for t, v in report.sweep))


def print_changes(ch: dict, reference: Path) -> None:
    """What the source made of the reference's labels (``eval.changes``), one table."""
    table = Table(title=f"changes relative to {reference.name} (pixels with ground truth)")
    table.add_column("")
    table.add_column("pixels", justify="right")
    table.add_column("precision %", justify="right")
    g = ch["groups"]
    added = g["added"]
    table.add_row("added (unlabelled before)", f"{added['pixels']:,} ({_fmt(ch['added_fraction_of_unlabelled'])}%)",
                  _fmt(ch["added_precision"]))
    for name, c in ch["added_by_class"].items():
        table.add_row(f"  added as {name}", f"{c['pixels']:,}", _fmt(c["precision"]))
        table.add_row("    nearer a wrong seed: wrong / right ones", "",
                      f"{_fmt(c['wrong_near_wrong_reference'])} / {_fmt(c['right_near_wrong_reference'])}")
    for name in ("kept", "relabelled", "removed"):
        n = g[name]["pixels"]
        before = g[name]["reference_right"] / n if n else None
        after = g[name]["new_right"] / n if n else None
        table.add_row(f"{name} (before -> after)", f"{n:,}", f"{_fmt(before)} -> {_fmt(after)}")
    table.add_row("wrong reference pixels", f"{ch['reference_wrong']:,}",
                  f"corrected {_fmt(ch['wrong_corrected'])}, kept {_fmt(ch['wrong_kept'])}")
    out.print(table)


def _evaluate(cfg: evaluate_stage.EvaluateConfig) -> None:
    cfg, to_stdout = json_to_stdout(cfg)
    with progress_bar("evaluate") as update:
        result = evaluate_stage.run(cfg, progress=update)
    if to_stdout:
        out.print_json(json.dumps(result.details.to_dict(), default=str))
        return
    p = result.details.protocol
    print_report(result.details, f"{p['source_kind']} {cfg.source.name} vs {p['dataset']}/{p['split']} ({p['images']} images)")
    if result.details.changes is not None:
        print_changes(result.details.changes, cfg.relative_to)
    print_result(result)


DOC = ("mIoU, pixel accuracy, mean class accuracy, fwIoU, per-class IoU, precision and coverage; "
       "object recall and precision (object classes pooled against background).")

COMMAND = Command("evaluate", evaluate_stage,
                  config_command(evaluate_stage.EvaluateConfig, "evaluate", _evaluate, DOC, rerun=False))
