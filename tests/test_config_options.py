"""Options declared once, on config fields: the command, its --help, --config and --set all
come from the declaration."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer
from typer.testing import CliRunner

from dgcn_cli.app import COMMANDS, app
from dgcn_cli.common import handle_errors
from dgcn_cli.config_options import config_command, flatten
from stages.core import options
from stages.core.config import to_jsonable
from stages.core.options import opt


@dataclass(frozen=True)
class Inner:
    rate: float = opt(0.5, "A rate.")
    pair: tuple[float, float] = opt((1.0, 1.0), "LO,HI.", parse=lambda t: options.float_range(t, "--pair"),
                                    show=options.show_floats, aliases=("--old-pair",))
    hidden: int = 3  # no option: reached with --set


@dataclass(frozen=True)
class Toy:
    out: Path = opt(help="Where.", required=True)
    inner: Inner = field(default_factory=Inner)
    name: str = opt("a", "A name.")
    flag: bool = opt(False, "A switch.")
    maybe: Optional[int] = opt(None, "Maybe a number.")


def _toy_app(seen: list):
    def run(cfg: Toy) -> None:
        seen.append(cfg)
        Path(cfg.out).write_text(json.dumps({"stage": "toy", **to_jsonable(cfg)}))

    toy = typer.Typer()
    toy.command("toy")(handle_errors(config_command(Toy, "toy", run, doc="A toy stage.")))
    toy.command("other")(lambda: None)  # a second command, so "toy" stays a subcommand
    return toy


def test_a_declared_field_reaches_help_options_config_and_set(tmp_path):
    seen: list = []
    toy, runner = _toy_app(seen), CliRunner()
    help_text = runner.invoke(toy, ["toy", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--out", "--rate", "--pair", "--old-pair", "--name", "--flag", "--no-flag", "--maybe", "--config", "--set"):
        assert flag in help_text, flag
    assert "--hidden" not in help_text
    first = tmp_path / "a.json"
    r = runner.invoke(toy, ["toy", "--out", str(first), "--rate", "0.25", "--old-pair", "0.7,1.3", "--flag",
                            "--set", "inner.hidden=9"])
    assert r.exit_code == 0, r.output
    assert seen[-1] == Toy(out=first, inner=Inner(rate=0.25, pair=(0.7, 1.3), hidden=9), flag=True)
    # --config repeats every field the file records; the command line wins over it
    again = tmp_path / "b.json"
    r = runner.invoke(toy, ["toy", "--config", str(first), "--out", str(again), "--name", "b"])
    assert r.exit_code == 0, r.output
    assert seen[-1] == Toy(out=again, inner=Inner(rate=0.25, pair=(0.7, 1.3), hidden=9), name="b", flag=True)
    # one line for what is missing or wrong
    for args, message in ((["toy"], "--out is needed"), (["toy", "--out", "x", "--set", "nope=1"], "has no field nope"),
                          (["toy", "--out", "x", "--pair", "1,2,3"], "--pair takes LO,HI")):
        r = runner.invoke(toy, args)
        assert r.exit_code == 2 and message in r.output, r.output


def test_every_config_command_declares_each_flag_once():
    for c in COMMANDS:
        if c.name in ("cam", "train", "retrain"):
            cls = c.stage.__dict__[{"cam": "CamConfig", "train": "TrainConfig", "retrain": "RetrainConfig"}[c.name]]
            flats = flatten(cls)
            flags = [f.flag for f in flats] + [a for f in flats for a in f.opt.aliases]
            assert len(flags) == len(set(flags)), c.name
            assert all(f.flag == "--" + f.name.replace("_", "-") for f in flats if f.name != "val" and f.name != "warmup_iters")


def test_set_reaches_the_run_and_an_unknown_field_is_one_line(tmp_path, train_demo_root, train_seeds):
    args = ["train", "--dataset", "demo", "--data-root", str(train_demo_root), "--seeds", str(train_seeds),
            "--backbone", "tiny", "--weights", "none", "--epochs", "1", "--batch-size", "4", "--crop", "48",
            "--expander", "none", "--boundary-loss", "none", "--device", "cpu"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--set", "optim.gamma=0.5", "--set", "optim.momentum=0.8"])
    assert r.exit_code == 0, r.output
    optim = json.loads((tmp_path / "a" / "config.json").read_text())["optim"]
    assert optim["gamma"] == 0.5 and optim["momentum"] == 0.8
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--set", "optim.gama=0.5"])
    assert r.exit_code == 2 and "has no field optim.gama" in r.output
    assert not (tmp_path / "b").exists()


def test_retrain_shows_its_own_defaults():
    text = CliRunner().invoke(app, ["retrain", "--help"], env={"COLUMNS": "300"}).output
    assert "(poly)" in text and "(0.001)" in text and "(19)" in text  # DSRG's, not train's
