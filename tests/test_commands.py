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
    listed = re.findall(r"^  ([a-z][a-z-]*)\s{2,}", out.split("Commands:")[1], flags=re.M)
    assert listed == PIPELINE == [c.name for c in COMMANDS]


def test_dataset_is_required_or_taken_from_the_environment(tmp_path):
    runner = CliRunner()
    args = ["saliency-bg", "--split", "train", "--out", str(tmp_path / "s.h5")]
    missing = runner.invoke(app, args, env={"DGCN_DATASET": None})
    assert missing.exit_code == 2 and "--dataset is needed" in missing.output
    assert not (tmp_path / "s.h5").exists()
    # the same command with the dataset from the environment gets past it (to the demo data's root)
    from_env = runner.invoke(app, [*args, "--data-root", str(tmp_path / "nowhere")], env={"DGCN_DATASET": "demo"})
    assert "--dataset is needed" not in from_env.output


def test_every_workers_option_has_one_default():
    defaults = {}
    for c in COMMANDS:
        cmd = typer.main.get_command(app).commands[c.name]
        for p in getattr(cmd, "params", []):
            if p.name in ("workers", "crf_workers"):
                # a config-built option shows the config's default (its own default is None: unset)
                shown = p.show_default if isinstance(p.show_default, str) else p.default
                defaults.setdefault(p.name, set()).add(int(shown))
    assert defaults == {"workers": {0}, "crf_workers": {1}}
