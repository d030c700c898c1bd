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


def test_every_command_but_prepare_takes_exactly_its_config_declarations():
    import typing
    click_app = typer.main.get_command(app)
    renamed = {"val": "--val-split", "warmup_iters": "--warmup", "json_out": "--json", "curves.labels": "--label"}
    for c in COMMANDS:
        if c.name == "prepare":
            continue
        cls = typing.get_type_hints(c.stage.run)["cfg"]
        flats = flatten(cls)
        flags = [f.flag for f in flats] + [a for f in flats for a in f.opt.aliases]
        assert len(flags) == len(set(flags)), c.name
        for f in flats:
            default = "--" + f.name.replace("_", "-")
            assert f.flag == renamed.get(f"{c.name}.{f.name}", renamed.get(f.name, default)), (c.name, f.flag)
        params = click_app.commands[c.name].params
        given = {o for p in params for o in p.opts if o.startswith("--")} - {"--config", "--set", "--nproc", "--help"}
        declared = {f.flag for f in flats if not f.opt.positional} | {a for f in flats for a in f.opt.aliases}
        assert given == declared, (c.name, given ^ declared)
        assert {p.name for p in params if p.param_type_name == "argument"} == {f.name for f in flats if f.opt.positional}


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


@dataclass(frozen=True)
class Where:
    name: str = opt("a", "Required where the section is used.", required=True, envvar="TOY_NAME")
    split: str = opt("train", "A split.")
    cache: Optional[Path] = opt(None, "A cache.", envvar="TOY_CACHE")


@dataclass(frozen=True)
class Either:
    source: Path = opt(help="What.", required=True, positional=True, metavar="SRC")
    # the section's options show and default to Where(split="val"); left out, it stays None
    where: Optional[Where] = options.section(None, cli_defaults=Where(split="val"))
    folder: Optional[Path] = opt(None, "Instead of where.", instead_of="where")


def test_an_optional_section_a_positional_and_instead_of():
    seen: list = []
    toy = typer.Typer()
    toy.command("either")(handle_errors(config_command(Either, "either", seen.append, doc="Either.", rerun=False)))
    toy.command("other")(lambda: None)
    runner = CliRunner()
    help_text = runner.invoke(toy, ["either", "--help"], env={"COLUMNS": "200"}).output
    assert "SRC" in help_text and "--split" in help_text and "(val)" in help_text and "--config" not in help_text

    def run(args, env=None):
        r = runner.invoke(toy, ["either", *args], env=env or {})
        return r, (seen.pop() if r.exit_code == 0 else None)

    r, cfg = run(["s", "--name", "n"])
    assert cfg == Either(source=Path("s"), where=Where(name="n", split="val"))  # the section's CLI defaults
    r, cfg = run(["s", "--folder", "f"])
    assert cfg == Either(source=Path("s"), where=None, folder=Path("f"))  # its required field is not asked for
    r, cfg = run(["s", "--folder", "f"], env={"TOY_NAME": "n", "TOY_CACHE": "c"})
    assert cfg.where is None  # the folder wins over the environment's section
    r, cfg = run(["s"], env={"TOY_CACHE": "c"})
    assert cfg.where is None  # an optional field from the environment alone does not ask for the section
    r, cfg = run(["s"], env={"TOY_NAME": "n"})
    assert cfg.where == Where(name="n", split="val")  # a required one does
    r, cfg = run(["s", "--split", "x"])
    assert r.exit_code == 2 and "--name is needed" in r.output  # a section begun is a section checked
    r, _ = run([])
    assert r.exit_code == 2 and "SRC" in r.output


def test_infer_images_win_over_the_dataset_variable(tmp_path, monkeypatch):
    from stages import infer as infer_stage
    seen: list = []
    monkeypatch.setattr(infer_stage, "run", lambda cfg, progress=None: seen.append(cfg) or (_ for _ in ()).throw(SystemExit(0)))
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"")
    r = CliRunner().invoke(app, ["infer", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--images", str(tmp_path)],
                           env={"DGCN_DATASET": "voc"})
    assert r.exit_code == 0, r.output
    assert seen[0].data is None and seen[0].images == tmp_path
    r = CliRunner().invoke(app, ["infer", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")], env={"DGCN_DATASET": "voc"})
    assert seen[1].data.dataset == "voc" and seen[1].data.split == "val" and seen[1].images is None
