"""``report``: its options are ``ReportConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

from stages import report as report_stage

from .common import Command, out, print_result
from .config_options import config_command


def _report(cfg: report_stage.ReportConfig) -> None:
    result = report_stage.run(cfg)
    for t in report_stage.tables(result.details):
        out.print(t)
    print_result(result)


DOC = """One table over several `evaluate --json` results (seeds, proxy labels, predictions, ...).

    Rows are named from what each evaluated artifact records (its kind; the network's
    stage, expander and seed), not from file paths."""

COMMAND = Command("report", report_stage, config_command(report_stage.ReportConfig, "report", _report, DOC, rerun=False))
