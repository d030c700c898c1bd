"""Options shared by the subcommands, progress bars, and the one-line error handler."""
from __future__ import annotations

import errno
import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from stages.core.config import DataConfig
from stages.core.datasets import DATASETS
from stages.core.errors import DgcnError
from stages.core.nets import BACKBONES
from stages.core.registry import UnknownNameError
from stages.core.stage import StageResult

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # pipes and files get full tables

F = TypeVar("F", bound=Callable)

DatasetOpt = typer.Option("demo", "--dataset", help=f"Dataset: {', '.join(DATASETS.names())} (folder: your own images + labels CSV).")
DataRootOpt = typer.Option(None, "--data-root", help="Dataset folder (VOCdevkit/VOC2012, the COCO root, or your folder). Not needed for demo.")
LabelsFileOpt = typer.Option(None, "--labels-file", help="Image-level labels from a file ('id cls cls ...' lines, or cls_labels.npy) instead of deriving them from masks.")
CacheDirOpt = typer.Option(None, "--cache-dir", envvar="DGCN_CACHE", help="Where derived data (labels, rasterised masks, demo data) is cached. Default ~/.cache/dgcn.")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")
SeedOpt = typer.Option(0, "--seed", help="Random seed.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing output.")
ResumeOpt = typer.Option(False, "--resume", help="Continue an interrupted run; images already done are skipped.")


def backbone_option(default: str, note: str = "") -> typer.models.OptionInfo:
    """``--backbone`` with the registry's names in its help."""
    return typer.Option(default, "--backbone", help=f"Backbone: {', '.join(BACKBONES.names())}{note}.")


def data_config(dataset: str, data_root: Optional[Path], split: str, labels_file: Optional[Path], cache_dir: Optional[Path]) -> DataConfig:
    return DataConfig(dataset=dataset, data_root=data_root, split=split, labels_file=labels_file, cache_dir=cache_dir)


def fail(message: str, code: int = 2) -> None:
    # escaped: messages hold paths and class lists in brackets that rich would read as markup
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def worker_message(text: str) -> str:
    """The error itself, from what a DataLoader worker re-raises in the main process: the same
    exception type, but its message is "Caught X in DataLoader worker process N." followed by
    the worker's traceback, whose last line is "pkg.module.X: <the message>"."""
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    name, sep, message = last.partition(": ")
    return message if sep and " " not in name else last


# usage errors and exits that typer itself prints (its ClickException is click's, or a vendored copy)
_CLI_EXITS = (typer.Exit, typer.Abort, next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DgcnError, UnknownNameError) as err:
            fail(worker_message(str(err)))
        except OSError as err:
            if err.errno == errno.ENOSPC or "No space left" in str(err):
                fail(f"disk full while writing ({err.filename or 'output'}); partial outputs are kept: free space and rerun with --resume")
            where = f" ({err.filename})" if err.filename else ""
            fail(f"{err.strerror or err}{where}")
        except KeyboardInterrupt:
            fail("interrupted; partial outputs are kept: rerun with --resume to continue", code=130)
        except _CLI_EXITS:
            raise  # usage errors and exits: typer prints them
        except Exception as err:  # noqa: BLE001 - a bug of ours: one line, the traceback on request
            if os.environ.get("DGCN_DEBUG"):
                raise
            first = (str(err).strip().splitlines() or [""])[0]
            fail(f"internal error ({type(err).__name__}: {first}); please report it, with the "
                 "traceback that DGCN_DEBUG=1 prints", code=3)

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[..., None]]:
    """Yields ``update(done, total, **fields)``; quiet when stderr is not a terminal."""
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not sys.stderr.isatty(),
    )
    with prog:
        task = prog.add_task(description, total=None, info="")

        def update(done: int, total: int, info: str = "") -> None:
            prog.update(task, completed=done, total=total, info=info)

        yield update


def print_result(result: StageResult) -> None:
    """What a stage returned, for a person: its warnings, then its summary lines."""
    for message in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if result.summary:
        out.print(result.summary, highlight=False, soft_wrap=True)


# The parse_* helpers only turn an option's text into values; whether the values are in range
# is for the stage's config to say (one place, the same line from the CLI and the Python API).


def parse_scales(text: str, option: str = "--scales") -> tuple[float, ...]:
    """Comma-separated numbers, e.g. ``0.75,1,1.25``."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers such as 0.75,1,1.25, got {text!r}", param_hint=option) from None


def parse_warmup(text: str) -> tuple[int, float]:
    """``--warmup``: '200' (iterations) -> (200, 0.0); '5%' (of the run) -> (0, 0.05)."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            return 0, float(raw[:-1]) / 100
        return int(raw), 0.0
    except ValueError:
        raise typer.BadParameter(f"expected iterations (200) or a share of the run's iterations (5%), got {text!r}",
                                 param_hint="--warmup") from None


def parse_range(text: str, option: str) -> tuple[float, float]:
    """'LO,HI' -> (LO, HI); a single number X -> (X, X)."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise typer.BadParameter(f"expected LO,HI (or one number), got {text!r}", param_hint=option)
    return vals[0], vals[1]
