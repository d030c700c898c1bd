"""Commands built from the config they fill: each option is the ``opt`` declaration on a config
field (``stages.core.options``), so a setting is declared once, where its value lives, and its
flag is the field's name.

``config_command(TrainConfig, run)`` walks the config's fields (sections such as ``run``,
``data``, ``model``, ``optim`` flattened), makes one option per declared field with the
config's own default, and builds the config from what was given:

1. the config's defaults (the stage's own: ``retrain``'s schedule is DSRG's);
2. ``--config RUN/config.json``: every field the file records (any run folder's
   ``config.json``), except the invocation's own ``resume`` and ``overwrite``;
3. the environment variables fields declare (``DGCN_DATASET``), where the file is silent;
4. the options given on the command line;
5. ``--set path.to.field=VALUE`` (repeatable): any field, declared as an option or not
   (``--set optim.gamma=0.5``).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import typer

from stages.core.checks import OptionError
from stages.core.datasets import DataConfig
from stages.core.options import Opt, option_of, scalar, section_defaults

from .common import print_result, progress_bar
from .training_options import NPROC, launch_distributed

MISSING = dataclasses.MISSING
NOT_FROM_FILE = ("resume", "overwrite")  # an invocation's, not a run's


@dataclass(frozen=True)
class Flat:
    """One declared field: where it lives in the config, its declaration, type and default."""

    path: tuple[str, ...]
    opt: Opt
    hint: Any
    default: Any
    optional_section: Optional[tuple[str, ...]] = None  # the Optional[...] section it is in

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def flag(self) -> str:
        return self.opt.flag_for(self.name)


def _optional_of(hint: Any) -> Any:
    """X for Optional[X], else None."""
    if typing.get_origin(hint) is Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and type(None) in typing.get_args(hint):
            return args[0]
    return None


def _is_section(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint) and isinstance(hint, type)


def _section_of(hint: Any) -> Any:
    """The dataclass of a section field, ``X`` or ``Optional[X]``; else None."""
    inner = _optional_of(hint) or hint
    return inner if _is_section(inner) else None


def _section_base(f: dataclasses.Field, default: Any) -> Any:
    """The instance whose values a section's options default to."""
    return default if default not in (MISSING, None) else section_defaults(f)


def _default(f: dataclasses.Field, parent: Any) -> Any:
    if parent is not None:
        return getattr(parent, f.name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


def flatten(cls: type, parent: Any = None, prefix: tuple[str, ...] = (),
            optional: Optional[tuple[str, ...]] = None) -> list[Flat]:
    """The declared fields of ``cls`` and of its sections, depth first, with the defaults of
    ``parent`` (a section's default instance: ``RETRAIN_OPTIM`` for ``retrain``'s optim)."""
    hints = typing.get_type_hints(cls)
    flats: list[Flat] = []
    for f in dataclasses.fields(cls):
        hint, default, path = hints[f.name], _default(f, parent), prefix + (f.name,)
        sec = _section_of(hint)
        if sec is not None and option_of(f) is None:
            inner_optional = optional or (path if _optional_of(hint) is not None else None)
            flats += flatten(sec, _section_base(f, default), path, inner_optional)
        elif option_of(f) is not None:
            flats.append(Flat(path, option_of(f), hint, default, optional))
    return flats


def _shown(flat: Flat) -> Optional[str]:
    value = flat.default
    if value is MISSING or flat.opt.required:
        return None
    if flat.opt.show is not None:
        return flat.opt.show(value)
    if flat.opt.repeat or value is None:
        return None
    return str(value)


def _parameter(flat: Flat) -> inspect.Parameter:
    o = flat.opt
    inner = _optional_of(flat.hint) or flat.hint
    names = [flat.flag, *o.aliases]
    if o.repeat:
        item = (typing.get_args(inner) or (str,))[0]
        annotation: Any = Optional[list[Path if item is Path else str]]
    elif o.parse is not None or flat.name == "val":
        annotation = Optional[str]
    elif inner is bool:
        annotation = Optional[bool]
        names = [f"{flat.flag}/{o.negative or '--no-' + flat.flag[2:]}"]
    else:
        annotation = Optional[inner]
    kwargs: dict[str, Any] = {"help": o.help_text(), "show_default": _shown(flat) or False}
    if o.metavar:
        kwargs["metavar"] = o.metavar
    if o.positional:
        kwargs.pop("show_default")
        info = typer.Argument(... if o.required else None, exists=o.exists, **kwargs)
        return inspect.Parameter(flat.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)
    if o.envvar:
        kwargs.update(envvar=o.envvar, show_envvar=True)
    if o.exists:
        kwargs["exists"] = True
    if o.repeat:
        kwargs["show_default"] = False
    info = typer.Option(None, *names, **kwargs)
    return inspect.Parameter(flat.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def declared_option(cls: type, name: str) -> Any:
    """The typer option of one declared field, for a command not built from ``cls``
    (``prepare coco --cache-dir`` is ``DataConfig.cache_dir``)."""
    return _parameter(next(f for f in flatten(cls) if f.name == name)).default


def _coerce(hint: Any, value: Any) -> Any:
    """A JSON value (or ``--set`` text read as JSON) as the field's type."""
    inner = _optional_of(hint)
    if inner is not None:
        return None if value is None else _coerce(inner, value)
    if value is None:
        return None
    if _is_section(hint):
        return hint(**{k: _coerce(h, value[k]) for k, h in typing.get_type_hints(hint).items() if k in value})
    origin = typing.get_origin(hint)
    if hint is Path:
        return Path(value)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(item, v) for v in value) if isinstance(value, (list, tuple)) else (value,)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _set_item(values: dict, cls: type, item: str) -> None:
    path_text, sep, raw = item.partition("=")
    path = tuple(p for p in path_text.strip().split(".") if p)
    if not sep or not path:
        raise OptionError(f"--set takes PATH=VALUE (e.g. optim.gamma=0.5), got {item!r}")
    hint = _field_hint(cls, path)
    if hint is None:
        raise OptionError(f"--set {path_text}: {cls.__name__} has no field {path_text}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = scalar(raw)
    if isinstance(value, str) and typing.get_origin(_optional_of(hint) or hint) is tuple:
        value = [scalar(v) for v in value.split(",")]
    values[path] = _coerce(hint, value)


def _field_hint(cls: type, path: tuple[str, ...]) -> Any:
    hint: Any = cls
    for name in path:
        if not _is_section(hint):
            return None
        hints = typing.get_type_hints(hint)
        if name not in hints:
            return None
        hint = hints[name]
    return hint


def _from_file(cls: type, record: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every field of ``cls`` that a run's config.json records, as the field's type."""
    out: dict[tuple[str, ...], Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in record or f.name in NOT_FROM_FILE:
            continue
        hint, value = hints[f.name], record[f.name]
        if _section_of(hint) is not None and option_of(f) is None and isinstance(value, dict):
            out.update(_from_file(_section_of(hint), value, prefix + (f.name,)))
        else:
            out[prefix + (f.name,)] = _coerce(hint, value)
    return out


def _build(cls: type, parent: Any, values: dict, prefix: tuple[str, ...] = ()) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        path, default = prefix + (f.name,), _default(f, parent)
        sec = _section_of(hints[f.name])
        if sec is not None and option_of(f) is None and path not in values:
            if _optional_of(hints[f.name]) is not None and not _given_under(values, path):
                kwargs[f.name] = None if default is MISSING else default  # none of its options given
            else:
                kwargs[f.name] = _build(sec, _section_base(f, default), values, path)
        elif path in values:
            kwargs[f.name] = values[path]
        elif default is not MISSING:
            kwargs[f.name] = default
    return cls(**kwargs)


def _given_under(values: dict, section: tuple[str, ...]) -> bool:
    return any(path[:len(section)] == section for path in values)


def record_value(record: dict, path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def read_config_file(path: Path, stage: str) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise OptionError(f"--config {path}: not a readable run config ({err.__class__.__name__})") from None
    made_by = record.get("stage") if isinstance(record, dict) else None
    if made_by != stage:
        raise OptionError(f"--config {path} is not the config.json of a `dgcn {stage}` run"
                          + (f" (it is from `dgcn {made_by}`)" if made_by else ""))
    return record


@dataclass
class _Given:
    """What the command line (and the environment) gave, as config values."""

    names: set[str]  # fields given (command line or environment)
    from_env: set[tuple[str, ...]]  # paths only the environment gave
    val_split: Any  # --val-split's text, MISSING when not given


def _read_given(by_name: dict[str, Flat], ctx: typer.Context, given: dict[str, Any], values: dict) -> _Given:
    """Puts the given options' values into ``values`` (over a --config file's); returns what
    was given and from where."""
    out = _Given(set(), set(), MISSING)
    for name, raw in given.items():
        flat = by_name[name]
        if raw is None or (flat.opt.repeat and not raw):
            continue
        if getattr(ctx.get_parameter_source(name), "name", "") == "ENVIRONMENT":
            if flat.path in values:
                continue  # the file's value wins over the environment's default
            out.from_env.add(flat.path)
        out.names.add(name)
        if name == "val":
            out.val_split = raw
            continue
        value = flat.opt.parse(raw) if flat.opt.parse is not None else raw
        if flat.opt.sets:
            for sibling, v in value.items():
                values[flat.path[:-1] + (sibling,)] = v
        else:
            values[flat.path] = _coerce(flat.hint, value) if not flat.opt.parse else value
    return out


def _drop_unasked_sections(flats: list[Flat], values: dict, from_env: set) -> None:
    """An optional section the command line did not ask for is left out: ``--images DIR``
    stands in for the dataset whatever the environment says, and DGCN_CACHE alone does not ask
    for a dataset (DGCN_DATASET, a required field, does)."""
    for flat in flats:
        if flat.opt.instead_of and values.get(flat.path) is not None:
            section = (*flat.path[:-1], flat.opt.instead_of)
            for path in [p for p in from_env if p[:len(section)] == section]:
                values.pop(path, None)
    for section in {f.optional_section for f in flats if f.optional_section is not None}:
        inside = [f for f in flats if f.optional_section == section and f.path in values]
        if all(f.path in from_env and not f.opt.required for f in inside):
            for f in inside:
                values.pop(f.path)


def _check_required(flats: list[Flat], values: dict, rerun: bool) -> None:
    for flat in flats:
        if flat.optional_section is not None and not _given_under(values, flat.optional_section):
            continue  # a section left out as a whole (infer on --images)
        if flat.opt.required and flat.path not in values:
            also = " (or --config with a run's config.json)" if rerun else ""
            among = f" ({', '.join(flat.opt.choices())})" if flat.opt.choices else ""
            env = f", or set {flat.opt.envvar}" if flat.opt.envvar else ""
            raise OptionError(f"{flat.flag} is needed{among}{also}{env}")


def config_values(cls: type, ctx: typer.Context, given: dict[str, Any], config: Optional[Path], sets: list[str],
                  stage: str, rerun: bool = True) -> Any:
    """The config these options ask for (the order of the module docstring)."""
    flats = flatten(cls)
    by_name = {f.name: f for f in flats}
    values: dict[tuple[str, ...], Any] = {}
    record: dict = {}
    file_val: Any = MISSING
    if config is not None:
        record = read_config_file(config, stage)
        values.update(_from_file(cls, record))
        val = values.pop(("run", "val"), None)
        file_val = val.split if isinstance(val, DataConfig) else None
    g = _read_given(by_name, ctx, given, values)
    val_split = g.val_split if g.val_split is not MISSING else file_val
    for flat in flats:  # a field tied to one given anew is not the file's (see Opt.tied_to)
        owner = by_name.get(flat.opt.tied_to or "")
        if owner is not None and owner.name in g.names and flat.name not in g.names and config is not None:
            if record_value(record, owner.path) != values.get(owner.path):
                values.pop(flat.path, None)
    _drop_unasked_sections(flats, values, g.from_env)
    for item in sets:
        _set_item(values, cls, item)
    _check_required(flats, values, rerun)
    if "val" in by_name and val_split is not MISSING:
        data = _build(DataConfig, None, {k[1:]: v for k, v in values.items() if k[:1] == ("data",)})
        values[("run", "val")] = dataclasses.replace(data, split=val_split) if val_split else None
    return _build(cls, None, values)


ConfigOpt = typer.Option(None, "--config", exists=True, dir_okay=False,
                         help="Rerun with the settings of a run's config.json; options given here override it.")
SetOpt = typer.Option(None, "--set", metavar="PATH=VALUE",
                      help="Set any field of the stage's config, e.g. optim.gamma=0.5 or optim.momentum=0.95 "
                           "(repeatable; the keys of the run's config.json).")


def help_paragraphs(doc: str) -> str:
    """``doc`` as ``--help`` should show it: paragraphs split at blank lines, each one line, for
    the help formatter to wrap at the terminal's width (typer's rich help, used before, kept
    the line breaks of every paragraph after the first: half-filled lines mid-sentence)."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def config_command(cls: type, stage: str, run: Callable[..., None], doc: str,
                   extra: tuple[inspect.Parameter, ...] = (), rerun: bool = True) -> Callable[..., None]:
    """A typer command for ``cls``: ``--config`` (with ``rerun``: a stage whose runs record a
    config.json), ``--set``, one option per declared field, and ``extra`` (invocation-only
    options such as ``--nproc``, passed to ``run`` by name); ``run(cfg, **extra)``."""
    flats = flatten(cls)
    flags = [f.flag for f in flats] + [a for f in flats for a in f.opt.aliases]
    if len(set(flags)) != len(flags) or len({f.name for f in flats}) != len(flats):
        raise TypeError(f"{cls.__name__}: two declared fields share a name or flag")
    params = [
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        *([inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=ConfigOpt, annotation=Optional[Path])]
          if rerun else []),
        *(_parameter(f) for f in flats),
        *extra,
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=SetOpt, annotation=Optional[list[str]]),
    ]
    extra_names = {p.name for p in extra}

    def command(**kw: Any) -> None:
        ctx, config, sets = kw.pop("ctx"), kw.pop("config", None), kw.pop("set_") or []
        invocation = {k: kw.pop(k) for k in extra_names}
        run(config_values(cls, ctx, kw, config, sets, stage, rerun), **invocation)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help_paragraphs(doc)
    command.__name__ = stage.replace("-", "_")
    return command


def stage_command(stage: Any, cls: type, name: str, doc: str, *, rerun: bool = False, distributed: bool = False,
                  after: Optional[Callable[[Any], None]] = None) -> Callable[..., None]:
    """The command of a stage module whose ``run(cfg, progress)`` takes ``cls``: its options,
    a progress bar, the result's lines, then ``after(cfg)``. ``distributed``: ``--nproc N``
    relaunches the command under torchrun (the training stages)."""

    def run(cfg: Any, nproc: int = 1) -> None:
        if nproc > 1:
            launch_distributed(nproc)
        with progress_bar(name) as update:
            result = stage.run(cfg, progress=update)
        print_result(result)
        if after is not None:
            after(cfg)

    return config_command(cls, name, run, doc, extra=(NPROC,) if distributed else (), rerun=rerun)
