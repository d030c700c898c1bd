"""One command per stage, in pipeline order: every stage module has its command, every
command runs a stage, and `dgcn --help` lists them in the order of ``app.COMMANDS``."""
from __future__ import annotations

import pkgutil
import re

import typer
from typer.testing import CliRunner

import stages
from dgcn_cli.app import COMMANDS, app

PIPELINE = ["prepare", "demo-data", "cam", "saliency-bg", "seeds", "train", "graphcut-label", "retrain",
            "infer", "evaluate", "report", "show", "curves", "inspect"]


def test_every_stage_has_its_command_and_the_reverse():
    stage_modules = {f"stages.{m.name}" for m in pkgutil.iter_modules(stages.__path__) if not m.ispkg}
    by_command = {c.stage.__name__ for c in COMMANDS}
    assert by_command == stage_modules
    assert len(by_command) == len(COMMANDS)  # one command per stage
    for c in COMMANDS:  # a command is named after its stage module
        assert c.stage.__name__ == "stages." + c.name.replace("-", "_"), c.name
        assert callable(getattr(c.stage, "run", None)), c.stage.__name__


def test_the_registered_commands_are_the_list():
    assert set(typer.main.get_command(app).commands) == {c.name for c in COMMANDS}


def test_help_follows_the_pipeline_order():
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    listed = [n for n in re.findall(r"^│ ([a-z][a-z-]*)\s{2,}", out, flags=re.M)]
    assert listed == PIPELINE == [c.name for c in COMMANDS]
