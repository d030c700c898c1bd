"""``report``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import report as report_stage

from .common import (
    Command,
    out,
    print_result,
)


def report(
    files: list[Path] = typer.Argument(..., exists=True, metavar="JSON...", help="JSON files written by `dgcn evaluate --json`."),
    by_seed: bool = typer.Option(False, "--by-seed", help="Merge rows that differ only in their training seed: mean ± sample std."),
    per_class: bool = typer.Option(False, "--per-class", help="Also a table of per-class IoU (mean over a row's runs)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the table as text to this file."),
) -> None:
    """One table over several `evaluate --json` results (seeds, proxy labels, predictions, ...).

    Rows are named from what each evaluated artifact records (its kind; the network's
    stage, expander and seed), not from file paths."""
    result = report_stage.run(report_stage.ReportConfig(files=tuple(files), by_seed=by_seed, per_class=per_class, out=out_file))
    for t in report_stage.tables(result.details):
        out.print(t)
    print_result(result)


COMMAND = Command('report', report_stage, report)
