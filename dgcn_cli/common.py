"""Options shared by the subcommands, progress bars, and the one-line error handler."""
from __future__ import annotations

import errno
import functools
import inspect
import math
import os
import re
import sys
import time
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator, Optional, TextIO, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from stages.core.errors import DgcnError
from stages.core.registry import UnknownNameError
from stages.core.stage import StageResult
from stages.core.units import duration, rate_text

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # pipes and files get full tables

F = TypeVar("F", bound=Callable)

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


#: seconds between two progress lines when stderr is not a terminal (a log file, a pipe)
PROGRESS_INTERVAL_ENV = "DGCN_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL = 30.0


def progress_interval() -> float:
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise DgcnError(f"{PROGRESS_INTERVAL_ENV} must be a number of seconds (0 or more), got {raw!r}")
    return value


class PlainProgress:
    """Progress for a log: a line on ``stream`` at the first update, at most one every
    ``interval`` seconds, and one at the end, each whole (stage, done/total, percent, rate,
    time left, the stage's info), so that a batch job, ``dgcn train ... | cat`` or
    ``make voc > log`` shows a run of hours moving. A stage that runs several loops one after the other (``cam``: training
    iterations, then the images' CAMs) starts a new count; a new count is seen where ``total``
    changes or ``done`` goes back, and the old one gets its last line first. Nothing is printed
    before the first update: a stage that fails while it sets up says so in its one error line."""

    def __init__(self, description: str, stream: TextIO, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.description = description
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self._first: Optional[tuple[int, float]] = None  # (done, time) of this count's first update
        self._last: Optional[tuple[int, int, str]] = None  # (done, total, info) of the latest update
        self._printed_at = -math.inf
        self._pending = False  # the latest update has no line yet

    def update(self, done: int, total: int, info: str = "") -> None:
        now = self.clock()
        if self._last is not None and (total != self._last[1] or done < self._last[0]):
            self._flush()  # the previous count's last line, then a new count
            self._first = None
        self._last = (done, total, info)
        self._pending = True
        if self._first is None:
            self._first = (done, now)
            self._print(now)
        elif now - self._printed_at >= self.interval:
            self._print(now)

    def close(self, failed: bool = False) -> None:
        """The last line: the final count (done == total) unless it was just printed; with
        ``failed``, where the run stopped."""
        if self._last is not None and (self._pending or failed):
            self._print(self.clock(), stopped=failed)

    def _flush(self) -> None:
        if self._pending:
            self._print(self.clock())

    def _print(self, now: float, stopped: bool = False) -> None:
        done, total, info = self._last  # type: ignore[misc]
        parts = [f"{done}/{total}" + (f" ({100 * done // total}%)" if total > 0 else "")]
        first_done, first_t = self._first  # type: ignore[misc]
        elapsed = now - first_t
        rate = (done - first_done) / elapsed if elapsed > 0 and done > first_done else None
        if rate is not None:
            parts[0] += f" {rate_text(rate)}"
        if stopped:
            parts.append(f"stopped after {duration(elapsed)}")
        elif total > 0 and done >= total:
            parts.append(f"took {duration(elapsed)}" if elapsed > 0 else "done")
        elif rate is not None and total > 0:
            parts.append(f"{duration((total - done) / rate)} left")
        if info:
            parts.append(info)
        self._write(f"{self.description}: {', '.join(parts)}")
        self._printed_at = now
        self._pending = False

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head) must not stop the run
            pass


class _RateColumn(ProgressColumn):
    """Items (or iterations) per second, as the plain lines write it."""

    def render(self, task) -> Text:
        speed = task.speed
        return Text(rate_text(speed) if speed and speed > 0 else "", style="progress.data.speed")


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[..., None]]:
    """Yields ``update(done, total, info="")``. On a terminal, a rich progress bar; otherwise
    plain lines every ``DGCN_PROGRESS_INTERVAL`` seconds (default 30; see ``PlainProgress``).
    Under torchrun only rank 0 reports: the other processes' training is the same run."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield lambda done, total, info="": None
        return
    if not sys.stderr.isatty():
        plain = PlainProgress(description, sys.stderr, progress_interval())
        try:
            yield plain.update
        except BaseException:
            plain.close(failed=True)
            raise
        plain.close()
        return
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
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


def json_to_stdout(cfg: Any) -> tuple[Any, bool]:
    """``--json -`` prints the JSON instead of writing a file: the config without the file,
    and whether to print."""
    if cfg.json_out is not None and str(cfg.json_out) == "-":
        return dataclasses.replace(cfg, json_out=None), True
    return cfg, False


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, the stage module it runs, and the function typer reads its
    options from (or a Typer of subcommands, as ``prepare voc|coco``). ``app.COMMANDS`` lists
    them in pipeline order, which ``dgcn --help`` follows."""

    name: str
    stage: ModuleType
    function: Any

    def register(self, app: typer.Typer) -> None:
        if isinstance(self.function, typer.Typer):
            app.add_typer(self.function, name=self.name, short_help=first_sentence(self.function.info.help))
        else:
            short = first_sentence(inspect.getdoc(self.function))
            app.command(self.name, short_help=short)(handle_errors(self.function))


def first_sentence(help_text: Any) -> Optional[str]:
    """A command's entry in its group's ``--help``: the first sentence of its help, whole
    (click cuts its own short help at the width left after the names, mid-sentence at 80
    columns)."""
    if not isinstance(help_text, str) or not help_text.strip():
        return None
    first = " ".join(help_text.strip().split("\n\n")[0].split())
    end = re.search(r"\.\s(?=[A-Z])", first)  # a capital after the stop: not "e.g. this"
    return first if end is None else first[: end.start() + 1]
