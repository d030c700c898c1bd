"""The ``dgcn`` command in-process: help for every command, demo-data, evaluate, inspect, errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages.core.datasets.demo import DEMO_CLASSES
from stages.core.io.artifacts import ArtifactMeta, ArtifactWriter
from stages.core.version import __version__

runner = CliRunner()

COMMANDS = sorted(typer.main.get_command(app).commands)


def invoke(args: list[str], cache_dir: Path):
    return runner.invoke(app, [str(a) for a in args], env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "200"})


def test_registered_commands_include_the_basics() -> None:
    assert {"demo-data", "inspect", "evaluate"} <= set(COMMANDS)


def test_version(cache_dir: Path) -> None:
    r = invoke(["--version"], cache_dir)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"dgcn {__version__}"


def test_help(cache_dir: Path) -> None:
    r = invoke(["--help"], cache_dir)
    assert r.exit_code == 0, r.output
    for name in COMMANDS:
        assert name in r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str, cache_dir: Path) -> None:
    r = invoke([command, "--help"], cache_dir)
    assert r.exit_code == 0, r.output
    assert "Usage" in r.stdout and command in r.stdout


def _tree(group, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every command by its path (``("prepare", "voc")``), groups included."""
    found = {}
    for name, cmd in group.commands.items():
        found[prefix + (name,)] = cmd
        if hasattr(cmd, "commands"):
            found.update(_tree(cmd, prefix + (name,)))
    return found


TREE = _tree(typer.main.get_command(app))
LEAVES = {path: cmd for path, cmd in TREE.items() if not hasattr(cmd, "commands")}


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_help_shows_every_option_whole_at_80_columns(path: tuple[str, ...], cache_dir: Path) -> None:
    # rich's option table cut long names at 80 columns ("--expander-optio…"): an option
    # a user cannot read is one they cannot type
    cmd = LEAVES[path]
    r = runner.invoke(app, [*path, "--help"], env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout
    flags = [o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    assert "--expander-options" in flags or path != ("train",)
    for flag in flags:
        assert flag in r.stdout, (path, flag)
    assert max(len(line) for line in r.stdout.splitlines()) <= 80


def test_group_help_lists_each_command_by_its_whole_first_sentence(cache_dir: Path) -> None:
    r = runner.invoke(app, ["--help"], env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "Fuse CAMs and a background cue into seed maps, or import seeds from DSRG/IRN files." in text
    assert "Proxy labels: a trained network's probabilities and features expand the seeds." in text


def test_first_sentence() -> None:
    from dgcn_cli.common import first_sentence

    assert first_sentence("Train it (e.g. this).  More.\n\nSecond.") == "Train it (e.g. this)."
    assert first_sentence("One line\nwrapped, no stop") == "One line wrapped, no stop"
    assert first_sentence(None) is None and first_sentence("  ") is None


def test_help_paragraphs_are_single_lines() -> None:
    # one line per paragraph: typer's rich help kept the line breaks of every paragraph but
    # the first, which showed as half-filled lines ("labels the" / "split (logits ...")
    helps = {" ".join(path): cmd.help or "" for path, cmd in TREE.items()}
    assert {"retrain", "report", "prepare voc"} <= set(helps)
    for name, text in helps.items():
        assert text.strip(), name
        for paragraph in text.split("\n\n"):
            assert "\n" not in paragraph, (name, paragraph)


def test_help_paragraphs_by_hand() -> None:
    from dgcn_cli.config_options import help_paragraphs

    doc = """First line
    goes on.

    Second paragraph,
      indented, ends."""
    assert help_paragraphs(doc) == "First line goes on.\n\nSecond paragraph, indented, ends."


def test_demo_data_writes_and_refuses_to_overwrite(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo-data", "--out", out, "--n-train", 3, "--n-val", 2, "--size", 64, "--seed", 5]
    r = invoke(args, cache_dir)
    assert r.exit_code == 0, r.output
    assert "3 train, 2 val" in r.stdout
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 5
    assert len(list((out / "SegmentationClass").glob("*.png"))) == 5
    assert json.loads((out / "demo.json").read_text())["seed"] == 5
    before = (out / "JPEGImages" / "train_0000.jpg").read_bytes()

    again = invoke(["demo-data", "--out", out, "--n-train", 1, "--n-val", 1, "--size", 64], cache_dir)
    assert again.exit_code != 0
    assert "--overwrite" in again.output
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 5  # untouched
    assert (out / "JPEGImages" / "train_0000.jpg").read_bytes() == before

    over = invoke(["demo-data", "--out", out, "--n-train", 1, "--n-val", 1, "--size", 64, "--overwrite"], cache_dir)
    assert over.exit_code == 0, over.output
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 2


def test_evaluate_png_folder(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "pngs"
    shutil.copytree(demo_root / "SegmentationClass", folder)
    json_out = tmp_path / "eval.json"
    r = invoke(
        ["evaluate", folder, "--dataset", "demo", "--data-root", demo_root, "--split", "val",
         "--cache-dir", cache_dir, "--json", json_out],
        cache_dir,
    )
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.stdout
    miou_line = next(ln for ln in r.stdout.splitlines() if "mIoU" in ln)
    assert "100.0" in miou_line
    data = json.loads(json_out.read_text())
    assert data["miou"] == 1.0 and data["protocol"]["images"] == 6 and data["protocol"]["split"] == "val"
    # scoring needs masks, not image-level labels: none were derived, nothing went into the dataset
    assert not list(cache_dir.rglob("val.json"))
    assert not list(demo_root.rglob("*.json.*"))


def test_evaluate_missing_source_is_a_usage_error(tmp_path: Path, cache_dir: Path) -> None:
    r = invoke(["evaluate", tmp_path / "nothing.h5"], cache_dir)
    assert r.exit_code == 2
    assert "Traceback" not in r.output


def _write(path: Path, kind: str, n: int = 3, classes=DEMO_CLASSES) -> Path:
    with ArtifactWriter(path, ArtifactMeta(kind=kind, dataset="demo", split="val", class_names=classes,
                                           config={"k": 9})) as w:
        for i in range(n):
            if kind == "saliency":
                w.write(f"val_{i:04d}", saliency=np.zeros((8, 8), np.float16))
            else:
                w.write(f"val_{i:04d}", label=np.zeros((8, 8), np.uint8))
        return w.finish()


def test_inspect(tmp_path: Path, cache_dir: Path) -> None:
    path = _write(tmp_path / "seeds.h5", "seeds", n=4)
    r = invoke(["inspect", path], cache_dir)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any(ln.split() == ["kind", "seeds"] for ln in lines), r.stdout
    assert any(ln.split() == ["count", "4"] for ln in lines), r.stdout
    assert "uint8 (8, 8)" in r.stdout

    rj = invoke(["inspect", path, "--json", "-"], cache_dir)
    assert rj.exit_code == 0, rj.output
    info = json.loads(rj.stdout)
    assert info["kind"] == "seeds" and info["count"] == 4 and info["config"] == {"k": 9}
    assert info["first_item"] == {"id": info["first_item"]["id"], "label": "uint8 (8, 8)"}
    # --json PATH: the same description in a file, as evaluate --json writes its numbers
    rf = invoke(["inspect", path, "--json", tmp_path / "info.json"], cache_dir)
    assert rf.exit_code == 0, rf.output
    assert json.loads((tmp_path / "info.json").read_text()) == info


def _single_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_wrong_kind_artifact_gives_one_line_error(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    path = _write(tmp_path / "a-rather-long-folder-name-to-tempt-line-wrapping" / "saliency.h5", "saliency", n=6)
    r = invoke(["evaluate", path, "--dataset", "demo", "--data-root", demo_root, "--split", "val"], cache_dir)
    line = _single_error_line(r)
    assert "'saliency'" in line and "dgcn seeds" in line


def test_unfinished_artifact_error_says_resume(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "seeds.h5"
    w = ArtifactWriter(path, ArtifactMeta(kind="seeds", dataset="demo", split="val", class_names=DEMO_CLASSES))
    w.write("val_0000", label=np.zeros((8, 8), np.uint8))
    w.close()
    r = invoke(["inspect", path], cache_dir)
    line = _single_error_line(r)
    assert "--resume" in line


def test_unknown_dataset_gives_one_line_error(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    r = invoke(["evaluate", demo_root / "SegmentationClass", "--dataset", "no-such-set"], cache_dir)
    line = _single_error_line(r)
    assert "'no-such-set'" in line and "demo" in line and "voc" in line


def test_dataset_error_gives_one_line_error(demo_root: Path, cache_dir: Path) -> None:
    r = invoke(["evaluate", demo_root / "SegmentationClass", "--dataset", "demo", "--data-root", demo_root,
                "--split", "test"], cache_dir)
    line = _single_error_line(r)
    assert "available splits: train, trainval, val" in line


def test_an_error_raised_in_a_loader_worker_is_one_line(tmp_path: Path, capsys) -> None:
    # what torch re-raises in the main process: the worker's exception type, the traceback in its message
    from torch.utils.data import DataLoader, Dataset

    from dgcn_cli.common import handle_errors, worker_message
    from stages.core.errors import DatasetError

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DatasetError(f"cannot read image {tmp_path}/x.jpg: truncated")

    def load():
        for _ in DataLoader(Broken(), batch_size=1, num_workers=1):
            pass

    with pytest.raises(DatasetError) as caught:
        load()
    assert "Original Traceback" in str(caught.value)  # torch's re-raise, as it is
    assert worker_message(str(caught.value)) == f"cannot read image {tmp_path}/x.jpg: truncated"
    assert worker_message("plain message: with a colon") == "plain message: with a colon"
    capsys.readouterr()
    with pytest.raises(typer.Exit):
        handle_errors(load)()
    assert capsys.readouterr().err.splitlines() == [f"error: cannot read image {tmp_path}/x.jpg: truncated"]
