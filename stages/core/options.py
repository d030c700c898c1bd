"""Each setting is declared once, on the config field that holds it: ``opt(default, help, ...)``
puts its command-line form in the field's metadata, and the CLI builds its options from those
declarations (``dgcn_cli.config_options``). The flag is the field's name (``step_epochs`` ->
``--step-epochs``); ``aliases`` are earlier spellings still read. A field without ``opt`` has
no flag of its own and is reached with ``--set path.to.field=VALUE``.

The text parsers below turn an option's text into the field's value; whether the value is in
range is for the config's own checks to say (one line, the same from the CLI and Python).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import DgcnError


class OptionTextError(DgcnError, ValueError):
    """An option's text that does not read as its value."""


@dataclass(frozen=True)
class Opt:
    help: str
    flag: Optional[str] = None  # default: "--" + the field name, dashes for underscores
    aliases: tuple[str, ...] = ()
    parse: Optional[Callable[[str], Any]] = None  # option text -> value (tuples, ranges, ...)
    show: Optional[Callable[[Any], str]] = None  # value -> option text (the default in --help)
    negative: Optional[str] = None  # a boolean's off flag, when not "--no-<name>"
    envvar: Optional[str] = None
    required: bool = False  # needed on the command line (or in --config / the envvar)
    repeat: bool = False  # given once per item: a tuple of strings, or KEY=VALUE pairs
    exists: bool = False  # a path that must exist
    sets: tuple[str, ...] = ()  # ``parse`` gives a dict of these sibling fields (``--warmup``)
    choices: Optional[Callable[[], Any]] = None  # a registry's names: "{choices}" in the help
    # a sibling field this one belongs to: when that one is given with another value than a
    # --config file's, this one is not taken from the file (k=9 is the graph cut's, not labelprop's)
    tied_to: Optional[str] = None
    positional: bool = False  # an argument, not an option (``evaluate ARTIFACT``)
    metavar: Optional[str] = None
    # an optional section this field stands in for: given, it leaves that section unset even
    # where an environment variable fills it (``infer --images`` over DGCN_DATASET)
    instead_of: Optional[str] = None

    def flag_for(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")

    def help_text(self) -> str:
        return self.help.replace("{choices}", ", ".join(self.choices())) if self.choices else self.help


def opt(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
        **kw: Any) -> Any:
    """A dataclass field with its command-line option (see ``Opt``)."""
    meta = {"option": Opt(help, **kw)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_of(f: dataclasses.Field) -> Optional[Opt]:
    return f.metadata.get("option")


def section(default: Any = None, *, cli_defaults: Any) -> Any:
    """An optional section (``Optional[DataConfig] = None``) whose fields are options: the
    command shows and fills them from ``cli_defaults`` (``DataConfig(split="val")``), and the
    section stays ``default`` unless one of them is given."""
    return dataclasses.field(default=default, metadata={"section_defaults": cli_defaults})


def section_defaults(f: dataclasses.Field) -> Any:
    return f.metadata.get("section_defaults")


# ------------------------------------------------------------------ settings many stages have


def overwrite_opt() -> Any:
    return opt(False, "Replace an existing output.")


def resume_opt(how: str = "; images already done are skipped") -> Any:
    return opt(False, f"Continue an interrupted run{how}.")


def workers_opt(what: str = "loading images (decoding, augmenting)") -> Any:
    return opt(0, f"Worker processes {what}; 0: the main process. Results do not depend on it.")


def json_out_opt(what: str) -> Any:
    """``--json PATH``: a file wherever it appears, ``-`` printing it instead (the CLI's part)."""
    return opt(None, f"Also write {what} as JSON to this file ('-': print the JSON instead).", flag="--json",
               metavar="PATH")


def device_opt() -> Any:
    return opt("auto", "auto (CUDA when present), cpu or cuda.")


def crf_workers_opt(default: int, what: str = "the network works on") -> Any:
    return opt(default, f"Processes running the dense CRFs while {what} (0: the main process). "
                        "Results do not depend on it.")


# ------------------------------------------------------------------ text -> value


def floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise OptionTextError(f"{option} takes comma-separated numbers, got {text!r}") from None


def float_range(text: str, option: str) -> tuple[float, float]:
    """'1' -> (1, 1); '0.7,1.3' -> (0.7, 1.3)."""
    values = floats(text, option)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise OptionTextError(f"{option} takes LO,HI (or one number), got {text!r}")
    return values[0], values[1]


def show_floats(values: Any) -> str:
    return ",".join(f"{v:g}" for v in values)


def names(text: str) -> Optional[tuple[str, ...]]:
    """'layer3,layer4' -> ('layer3', 'layer4'); '' -> None (the default)."""
    items = tuple(s.strip() for s in str(text).split(",") if s.strip())
    return items or None


def warmup(text: str) -> dict[str, Any]:
    """'200' (iterations) -> warmup_iters 200; '5%' (of the run's iterations) -> warmup_fraction 0.05."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            return {"warmup_iters": 0, "warmup_fraction": float(raw[:-1]) / 100}
        return {"warmup_iters": int(raw), "warmup_fraction": 0.0}
    except ValueError:
        raise OptionTextError(f"--warmup takes iterations (200) or a share of the run's iterations (5%), got {text!r}") from None


def key_values(items: Any, option: str) -> dict[str, Any]:
    """['k=9', 'theta=0.7', 'cut_background=false'] -> {'k': 9, 'theta': 0.7, 'cut_background': False}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        if not sep or not key:
            raise OptionTextError(f"{option} takes KEY=VALUE, got {item!r}")
        out[key] = scalar(raw)
    return out


def scalar(raw: str) -> Any:
    """A value's text as bool, int, float, None or the text itself."""
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw
