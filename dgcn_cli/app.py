"""The ``dgcn`` command: one subcommand per stage. Parsing and messages only;
the computation lives in ``stages``."""
from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperGroup

from stages.core.version import __version__


class _PipelineOrder(TyperGroup):
    """``--help`` lists the subcommands in ``COMMANDS``' order (typer puts groups last)."""

    def list_commands(self, ctx) -> list[str]:
        order = [c.name for c in COMMANDS]
        return sorted(super().list_commands(ctx), key=lambda n: order.index(n) if n in order else len(order))


app = typer.Typer(
    cls=_PipelineOrder,
    name="dgcn",
    help="Deep Graph Cut Network: weakly-supervised semantic segmentation from image-level labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # click's plain help: rich's option table cut long option names at 80 columns
    # ("--expander-optio…") and squeezed the help into a 17-character column
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dgcn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Deep Graph Cut Network: weakly-supervised semantic segmentation from image-level labels."""


from . import (  # noqa: E402  (after the callback: the order they register in is --help's)
    cmd_cam,
    cmd_curves,
    cmd_demo_data,
    cmd_evaluate,
    cmd_graphcut_label,
    cmd_infer,
    cmd_inspect,
    cmd_prepare,
    cmd_report,
    cmd_retrain,
    cmd_saliency_bg,
    cmd_seeds,
    cmd_show,
    cmd_train,
)

#: every subcommand, in pipeline order: data, cues, training, labels, retraining, prediction,
#: scoring, then the tools that look at results
COMMANDS = tuple(m.COMMAND for m in (
    cmd_prepare, cmd_demo_data, cmd_cam, cmd_saliency_bg, cmd_seeds, cmd_train, cmd_graphcut_label, cmd_retrain,
    cmd_infer, cmd_evaluate, cmd_report, cmd_show, cmd_curves, cmd_inspect,
))

for _command in COMMANDS:
    _command.register(app)


def main() -> None:
    app()
