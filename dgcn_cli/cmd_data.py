"""``demo-data`` and ``inspect``."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from stages.core import provenance
from stages.core.datasets.demo import DemoConfig, write_demo_dataset
from stages.core.io.artifacts import SCHEMAS, ArtifactReader
from stages.core.io.checkpoint import describe_checkpoint

from .common import handle_errors, out


def register(app: typer.Typer) -> None:
    @app.command("demo-data")
    @handle_errors
    def demo_data(
        out_dir: Path = typer.Option(..., "--out", help="Folder to write the demo dataset to (VOC layout)."),
        seed: int = typer.Option(0, "--seed", help="Generator seed: the same seed gives the same images."),
        n_train: int = typer.Option(300, "--n-train", help="Training images."),
        n_val: int = typer.Option(100, "--n-val", help="Validation images."),
        size: int = typer.Option(128, "--size", help="Image side in pixels."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    ) -> None:
        """Write the synthetic demo dataset (VOC layout) to a folder."""
        write_demo_dataset(out_dir, DemoConfig(seed=seed, n_train=n_train, n_val=n_val, size=size), overwrite=overwrite)
        out.print(f"demo dataset written to {out_dir} ({n_train} train, {n_val} val images)")

    @app.command("inspect")
    @handle_errors
    def inspect(
        paths: list[Path] = typer.Argument(..., metavar="FILE...", help="Artifact files (.h5) or checkpoints (.pt)."),
        as_json: bool = typer.Option(False, "--json", help="Print everything as JSON."),
        brief: bool = typer.Option(False, "--brief", help="One line per file: path, kind, content fingerprint (compare two runs with diff)."),
    ) -> None:
        """Print an artifact's kind, provenance, image count, schema and array shapes, or a
        checkpoint's kind, architecture and progress; each with its content fingerprint."""
        for path in paths:
            if brief:
                info = describe_checkpoint(path) if path.suffix == ".pt" else _artifact_info(path)
                out.print(f"{path} {info['kind']} {info['fingerprint']}", highlight=False, soft_wrap=True)
            elif path.suffix == ".pt":
                _inspect_checkpoint(path, as_json)
            else:
                _inspect_artifact(path, as_json)


def _artifact_info(path: Path) -> dict:
    with ArtifactReader(path) as r:
        return r.describe()


def _inspect_artifact(path: Path, as_json: bool) -> None:
    with ArtifactReader(path) as r:
        info = r.describe()
        shapes = {}
        if r.ids:
            first = r.ids[0]
            shapes = {k: f"{v.dtype} {tuple(v.shape)}" for k, v in r.arrays(first).items()}
        if as_json:
            out.print_json(json.dumps({**info, "first_item": shapes}))
            return
        table = Table(show_header=False, box=None)
        for key in ("path", "kind", "schema_version", "toolkit_version", "dataset", "split", "fingerprint", "count"):
            table.add_row(key, str(info[key]))
        table.add_row("classes", f"{len(info['class_names'])}: {', '.join(info['class_names'][:8])}{' ...' if len(info['class_names']) > 8 else ''}")
        table.add_row("inputs", json.dumps(info["inputs"]))
        if info["unreadable"]:
            table.add_row("unreadable", f"{len(info['unreadable'])}: {', '.join(info['unreadable'][:8])}")
        table.add_row("config", json.dumps(info["config"]))
        _environment_rows(table, info)
        for n, line in enumerate(SCHEMAS[r.kind].describe()):
            table.add_row("schema" if n == 0 else "", line)
        if shapes:
            table.add_row(f"arrays ({r.ids[0]})", ", ".join(f"{k}: {v}" for k, v in shapes.items()))
        out.print(table)


def _inspect_checkpoint(path: Path, as_json: bool) -> None:
    info = describe_checkpoint(path)
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    table = Table(show_header=False, box=None)
    for key in ("path", "kind", "fingerprint", "iteration", "epoch", "finished", "weight_average", "parameters"):
        table.add_row(key, str(info[key]))
    table.add_row("architecture", json.dumps(info["architecture"]))
    cfg = info["config"]
    table.add_row("made by", ", ".join(f"{k} {cfg[k]}" for k in ("stage", "expander", "backbone") if cfg.get(k)) or "-")
    table.add_row("precision", info["precision"] or "not recorded")
    table.add_row("config", json.dumps(cfg, default=str))
    _environment_rows(table, info)
    out.print(table)


def _environment_rows(table: Table, info: dict) -> None:
    """Where the file was made: one row per item of its environment ("not recorded" for files
    older than the record), then the earlier environments of a run or file resumed elsewhere."""
    for n, (key, value) in enumerate(provenance.describe(info.get("environment"))):
        table.add_row("environment" if n == 0 else "", f"{key}: {value}" if key != "environment" else value)
    for env in info.get("earlier_environments") or ():
        table.add_row("  before resume", provenance.one_line(env))
