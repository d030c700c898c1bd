"""``inspect``: its options are ``InspectConfig``'s declared fields (``config_options``)."""
from __future__ import annotations

import json
from rich.table import Table

from stages import inspect as inspect_stage
from stages.core import provenance

from .common import Command, json_to_stdout, out, print_result
from .config_options import config_command


def _artifact_table(info: dict) -> Table:
    table = Table(show_header=False, box=None)
    for key in ("path", "kind", "schema_version", "toolkit_version", "dataset", "split", "fingerprint", "count"):
        table.add_row(key, str(info[key]))
    names = info["class_names"]
    table.add_row("classes", f"{len(names)}: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
    table.add_row("inputs", json.dumps(info["inputs"]))
    if info["unreadable"]:
        table.add_row("unreadable", f"{len(info['unreadable'])}: {', '.join(info['unreadable'][:8])}")
    table.add_row("config", json.dumps(info["config"]))
    _environment_rows(table, info)
    for n, line in enumerate(info["schema"]):
        table.add_row("schema" if n == 0 else "", line)
    first = dict(info["first_item"])
    if first:
        image_id = first.pop("id")
        table.add_row(f"arrays ({image_id})", ", ".join(f"{k}: {v}" for k, v in first.items()))
    return table


def _checkpoint_table(info: dict) -> Table:
    table = Table(show_header=False, box=None)
    for key in ("path", "kind", "fingerprint", "iteration", "epoch", "finished", "weight_average", "parameters"):
        table.add_row(key, str(info[key]))
    table.add_row("architecture", json.dumps(info["architecture"]))
    cfg = info["config"]
    table.add_row("made by", ", ".join(f"{k} {cfg[k]}" for k in ("stage", "expander", "backbone") if cfg.get(k)) or "-")
    table.add_row("precision", info["precision"] or "not recorded")
    table.add_row("config", json.dumps(cfg, default=str))
    _environment_rows(table, info)
    return table


def _environment_rows(table: Table, info: dict) -> None:
    """Where the file was made: one row per item of its environment ("not recorded" for files
    older than the record), then the earlier environments of a run or file resumed elsewhere."""
    for n, (key, value) in enumerate(provenance.describe(info.get("environment"))):
        table.add_row("environment" if n == 0 else "", f"{key}: {value}" if key != "environment" else value)
    for env in info.get("earlier_environments") or ():
        table.add_row("  before resume", provenance.one_line(env))


def _inspect(cfg: inspect_stage.InspectConfig) -> None:
    cfg, to_stdout = json_to_stdout(cfg)
    result = inspect_stage.run(cfg)
    infos = result.details
    if to_stdout:
        out.print_json(json.dumps(infos if len(infos) > 1 else infos[0], default=str))
        return
    for path, info in zip(cfg.paths, infos):
        if cfg.brief:
            out.print(f"{path} {info['kind']} {info['fingerprint']}", highlight=False, soft_wrap=True)
        else:
            out.print(_checkpoint_table(info) if path.suffix == ".pt" else _artifact_table(info))
    print_result(result)


DOC = """Print an artifact's kind, provenance, image count, schema and array shapes, or a
    checkpoint's kind, architecture and progress; each with its content fingerprint."""

COMMAND = Command("inspect", inspect_stage, config_command(inspect_stage.InspectConfig, "inspect", _inspect, DOC, rerun=False))
