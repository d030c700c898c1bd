"""``--config RUN/config.json``: rerun a training run with the settings it was made with.

Every run folder holds the ``config.json`` its stage wrote. For each command-line option of
``cam``, ``train`` and ``retrain``, the table below says where its value lies in that file and how to
write it back as the option's text; an option given on the command line overrides the file,
every other one takes the file's value, then the command builds its config from the options
exactly as without ``--config``. ``--resume``, ``--overwrite`` and ``--nproc`` describe an
invocation, not a run, and never come from the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import typer

from stages.core.errors import DgcnError


def _opt_path(v: Any) -> Optional[Path]:
    return None if v is None else Path(v)


def _same(v: Any) -> Any:
    return v


def _pair(v: Any) -> str:
    return f"{v[0]:g},{v[1]:g}"


def _warmup(optim: Mapping[str, Any]) -> str:
    frac = float(optim.get("warmup_fraction", 0.0) or 0.0)
    return f"{100 * frac:g}%" if frac > 0 else str(int(optim["warmup_iters"]))


def _scales(v: Any) -> str:
    return ",".join(f"{s:g}" for s in v)


def _val_split(run: Mapping[str, Any]) -> Optional[str]:
    return run["val"]["split"] if run.get("val") else None


# option name (the command function's parameter) -> (path in config.json, JSON value -> option value)
Field = tuple[str, Callable[[Any], Any]]
_COMMON: dict[str, Field] = {
    "out_dir": ("run.out", Path),
    "dataset": ("data.dataset", _same),
    "data_root": ("data.data_root", _opt_path),
    "split": ("data.split", _same),
    "labels_file": ("data.labels_file", _opt_path),
    "cache_dir": ("data.cache_dir", _opt_path),
    "val_split": ("run", _val_split),
    "backbone": ("model.backbone", _same),
    "weights": ("model.weights", _same),
    "epochs": ("optim.epochs", _same),
    "batch_size": ("optim.batch_size", _same),
    "crop": ("optim.crop", _same),
    "rescale": ("optim.scale_range", _pair),
    "lr": ("optim.lr", _same),
    "warmup": ("optim", _warmup),
    "lr_step": ("optim.step_epochs", _same),
    "lr_schedule": ("optim.lr_schedule", _same),
    "poly_power": ("optim.poly_power", _same),
    "repeat_enclosed_params": ("optim.repeat_enclosed_params", _same),
    "head_mult": ("optim.head_lr_mult", _same),
    "ema": ("optim.ema_decay", _same),
    "amp": ("run.amp", _same),
    "tensorboard": ("run.tensorboard", _same),
    "keep_epochs": ("run.keep_epochs", _same),
    "workers": ("run.workers", _same),
    "device": ("run.device", _same),
    "seed": ("run.seed", _same),
}
_SEGMENTER: dict[str, Field] = {
    **_COMMON,
    "head": ("model.head", _same),
    "freeze_bn": ("model.freeze_bn", _same),
}
CAM_FIELDS: dict[str, Field] = {
    **_COMMON,
    "freeze_backbone": ("model.freeze_backbone", _same),
    "cam_split": ("cam_splits", list),
    "scales": ("scales", _scales),
}
TRAIN_FIELDS: dict[str, Field] = {
    **_SEGMENTER,
    "seeds": ("seeds", Path),
    "graph_layers": ("model.graph_layers", lambda v: ",".join(v) if v else ""),
    "expander": ("expander", _same),
    "expander_opt": ("expander_options", lambda d: [f"{k}={v}" for k, v in (d or {}).items()]),
    "boundary": ("boundary_loss", _same),
    "boundary_weight": ("boundary_weight", _same),
    "boundary_clip": ("boundary_clip", lambda v: "none" if v is None else _pair(v)),
    "seed_norm": ("seed_loss_per_image", lambda v: "image" if v else "batch"),
    "crf_workers": ("crf_workers", _same),
    "expand_after": ("expand_after", _same),
}
RETRAIN_FIELDS: dict[str, Field] = {
    **_SEGMENTER,
    "checkpoint": ("checkpoint", _opt_path),
    "labels": ("labels", _opt_path),
    "scales": ("scales", _scales),
    "combine": ("combine", _same),
    "flip": ("flip", _same),
    "crf": ("crf", _same),
    "init": ("init", _same),
    "crf_workers": ("crf_workers", _same),
}


#: options that belong to another: when that one is given on the command line with another
#: value, they are not taken from the file (k=9 is the graph cut's, not labelprop's)
TIED = {"expander_opt": "expander"}


def read_run_config(path: Path, stage: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DgcnError(f"--config {path}: not a readable run config ({err.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("stage") != stage:
        found = data.get("stage") if isinstance(data, dict) else None
        raise DgcnError(f"--config {path} is not the config.json of a `dgcn {stage}` run"
                        + (f" (it is from `dgcn {found}`)" if found else ""))
    return data


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        value = value[key]
    return value


def with_run_config(ctx: typer.Context, config: Optional[Path], stage: str, fields: Mapping[str, Field],
                    params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (the command's option values) with every option not given on the command
    line taken from the run config ``config`` (unchanged without one)."""
    if config is None:
        return params
    data = read_run_config(config, stage)
    merged = dict(params)

    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name == "COMMANDLINE"

    for name, (path, to_option) in fields.items():
        owner = TIED.get(name)
        if given(name) or (owner in fields and given(owner) and params[owner] != _lookup(data, fields[owner][0])):
            continue
        try:
            value = _lookup(data, path)
        except KeyError:
            continue  # a setting added after this run was made: its default
        try:
            merged[name] = to_option(value)
        except (KeyError, TypeError, IndexError, ValueError):
            raise DgcnError(f"--config {config}: no usable '{path}' entry for --{name.replace('_', '-')}") from None
    return merged


def require(params: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) is None:
            option = "--out" if name == "out_dir" else f"--{name.replace('_', '-')}"
            raise typer.BadParameter(f"{option} is needed (or --config with a run's config.json)", param_hint=option)
