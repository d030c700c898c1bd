"""The ``dgcn`` command: one subcommand per stage. Parsing and messages only;
the computation lives in ``stages``."""
from __future__ import annotations

from typing import Optional

import typer

from stages.core.version import __version__

app = typer.Typer(
    name="dgcn",
    help="Deep Graph Cut Network: weakly-supervised semantic segmentation from image-level labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
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


from . import (  # noqa: E402  (each registers its commands on `app`)
    cmd_cam,
    cmd_curves,
    cmd_data,
    cmd_evaluate,
    cmd_infer,
    cmd_prepare,
    cmd_seeds,
    cmd_show,
    cmd_train,
)

for _mod in (cmd_data, cmd_evaluate, cmd_cam, cmd_seeds, cmd_show, cmd_curves, cmd_infer, cmd_train, cmd_prepare):
    _mod.register(app)


def main() -> None:
    app()
