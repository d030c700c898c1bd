"""``curves``: reading metrics.jsonl (resumes, val per epoch, bad lines), the panels, the PNG, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import curves
from stages.core.errors import DgcnError

runner = CliRunner()
IPE = 18  # iterations per epoch, as in the demo runs: validation at 18, 36, 54, ...


def _step(it: int, loss: float, **stats: float) -> dict:
    return {"iteration": it, "epoch": (it - 1) // IPE, "lr": 0.01, "loss": loss, **stats}


def _val(it: int, miou: float) -> dict:
    return {"iteration": it, "epoch": it // IPE - 1, "val_miou": miou}


def _seg(it: int, loss: float) -> dict:
    return _step(it, loss, seed_loss=loss * 0.8, supervised=0.5, boundary_loss=loss * 0.2)


def _write_run(folder: Path, records: list[dict], tail: str = "") -> Path:
    """A run folder as RunFolder leaves it: config.json and one JSON record a line."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return folder


def _seg_records() -> list[dict]:
    return [_seg(10, 3.0), _val(18, 0.15), _seg(20, 2.0), _seg(30, 1.5), _val(36, 0.30), _seg(36, 1.2), _val(36, 0.31)]


@pytest.fixture
def seg_run(tmp_path: Path) -> Path:
    return _write_run(tmp_path / "graphcut-s0" / "train", _seg_records())


@pytest.fixture
def cls_run(tmp_path: Path) -> Path:
    return _write_run(tmp_path / "cam" / "classifier", [_step(i, 1.0 / i) for i in range(10, 80, 10)])


# ---------------------------------------------------------------- reading


def test_step_and_val_series_are_separated(seg_run: Path) -> None:
    rc = curves.read_metrics(seg_run)
    assert list(rc.steps) == ["lr", "loss", "seed_loss", "supervised", "boundary_loss"]
    assert list(rc.epochs) == ["val_miou"]
    assert rc.steps["loss"].x == (10, 20, 30, 36) and rc.steps["loss"].y == (3.0, 2.0, 1.5, 1.2)
    # the second record of iteration 36's validation wins; the step at 36 does not clash with it
    val = rc.epochs["val_miou"]
    assert val.x == (18, 36) and val.y == (0.15, 0.31) and val.epoch == (0, 1)
    assert rc.replaced == 1 and rc.restarts == 0 and rc.warnings == ()
    assert rc.last_iteration == 36


def test_classifier_run_has_only_loss_and_lr(cls_run: Path) -> None:
    rc = curves.read_metrics(cls_run / "metrics.jsonl")  # the file itself works too
    assert list(rc.steps) == ["lr", "loss"] and rc.epochs == {}
    assert [p.title for p in curves.plan_panels([rc])] == ["loss", "learning rate"]


def test_resume_from_an_earlier_checkpoint_keeps_the_later_attempt(tmp_path: Path) -> None:
    # attempt 1 logs to 90 and validates at 72 and 90, then dies; last.pt was at 54, so
    # attempt 2 relogs 60 and 70 (and is still running): 80, 90 and their vals are stale
    first = [_step(10, 9), _val(18, .1), _step(20, 8), _step(30, 7), _val(36, .2), _step(40, 6), _step(50, 5),
             _val(54, .3), _step(60, 4), _step(70, 3), _val(72, .4), _step(80, 2), _step(90, 1), _val(90, .5)]
    second = [_step(60, 40), _step(70, 30)]
    rc = curves.read_metrics(_write_run(tmp_path / "run", first + second))
    assert rc.steps["loss"].x == (10, 20, 30, 40, 50, 60, 70)
    assert rc.steps["loss"].y == (9, 8, 7, 6, 5, 40, 30)
    assert rc.epochs["val_miou"].x == (18, 36, 54) and rc.epochs["val_miou"].y == (.1, .2, .3)
    assert rc.restarts == 1 and rc.replaced == 6  # steps 60, 70, 80, 90; vals 72, 90


def test_two_resumes_and_a_finished_run(tmp_path: Path) -> None:
    records = [_step(10, 1), _step(20, 2), _step(10, 10), _step(20, 20), _step(30, 30), _step(20, 200), _step(30, 300)]
    rc = curves.read_metrics(_write_run(tmp_path / "run", records))
    assert rc.steps["loss"].x == (10, 20, 30) and rc.steps["loss"].y == (10, 200, 300)
    assert rc.restarts == 2 and rc.replaced == 4


def test_non_finite_values_become_gaps_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(
        '{"iteration": 10, "epoch": 0, "lr": 0.1, "loss": 1.0, "boundary_loss": NaN}\n'
        '{"iteration": 20, "epoch": 0, "lr": 0.1, "loss": 0.5, "boundary_loss": 0.2}\n')
    rc = curves.read_metrics(folder)
    assert np.isnan(rc.steps["boundary_loss"].y[0]) and rc.steps["boundary_loss"].y[1] == 0.2
    assert len(rc.warnings) == 1 and "boundary_loss" in rc.warnings[0] and "10" in rc.warnings[0]


def test_a_last_line_cut_short_is_skipped_with_a_warning(seg_run: Path) -> None:
    path = seg_run / "metrics.jsonl"
    path.write_text(path.read_text() + '{"iteration": 40, "epoch": 2, "lr": 0.0')
    rc = curves.read_metrics(seg_run)
    assert rc.steps["loss"].x == (10, 20, 30, 36)
    assert len(rc.warnings) == 1 and "line 8" in rc.warnings[0]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, expected", [
    ('{"iteration": 10, "loss": 1.0}\n{"iteration": 20, "loss"\n{"iteration": 30, "loss": 1.0}\n', "line 2"),
    ('{"iteration": 10, "loss": 1.0}\n\n[1, 2]\n', "line 3"),
    ('{"loss": 1.0}\n', "line 1"),
    ('{"iteration": 10, "loss": "high"}\n', "line 1"),
    ('{"iteration": 10, "loss": 1.0}\n\xff\n', "line 2"),
    ("", "no records"),
    ("\n\n", "no records"),
])
def test_bad_metrics_name_the_file_and_line_and_write_nothing(tmp_path: Path, content: str, expected: str) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").write_bytes(content.encode("latin-1"))
    out = tmp_path / "pics" / "c.png"
    with pytest.raises(curves.MetricsError) as err:
        curves.run(curves.CurvesConfig(runs=(folder,), out=out))
    message = str(err.value)
    assert expected in message and str(folder / "metrics.jsonl") in message and "\n" not in message
    assert not (tmp_path / "pics").exists()


def test_folder_without_metrics_is_refused(tmp_path: Path, seg_run: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(curves.MetricsError, match="empty has no metrics.jsonl"):
        curves.CurvesConfig(runs=(seg_run, empty), out=tmp_path / "c.png")
    with pytest.raises(curves.MetricsError, match="does not exist"):
        curves.CurvesConfig(runs=(tmp_path / "nowhere",), out=tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"out": "c.jpg"}, "must be a .png"),
    ({"labels": ("a", "b")}, "2 --label for 1 run"),
    ({"labels": (" ",)}, "must not be empty"),
    ({"width": 10}, "--width"),
    ({"height": 10}, "--height"),
    ({"smooth": 0}, "--smooth"),
])
def test_bad_options_are_refused(seg_run: Path, tmp_path: Path, kwargs: dict, match: str) -> None:
    kwargs = {"out": tmp_path / "c.png", **kwargs}
    with pytest.raises(DgcnError, match=match):
        curves.CurvesConfig(runs=(seg_run,), **kwargs)


def test_the_same_run_twice_is_refused(seg_run: Path, tmp_path: Path) -> None:
    with pytest.raises(DgcnError, match="given twice"):
        curves.CurvesConfig(runs=(seg_run, seg_run / "metrics.jsonl"), out=tmp_path / "c.png")


# ---------------------------------------------------------------- panels and picture


def test_panels_one_per_quantity_in_order(seg_run: Path, cls_run: Path) -> None:
    runs = [curves.read_metrics(seg_run), curves.read_metrics(cls_run)]
    panels = curves.plan_panels(runs)
    assert [p.title for p in panels] == [
        "loss (total)", "seed loss", "boundary loss", "supervised pixels (%)", "learning rate", "val mIoU (%)"]
    by_key = {p.key: p for p in panels}
    assert by_key["supervised"].scale == 100 and by_key["val_miou"].scale == 100 and by_key["val_miou"].per_epoch
    assert by_key["lr"].log_y and not by_key["loss"].per_epoch


def test_moving_average_keeps_the_ends_and_gaps() -> None:
    ramp = np.arange(10.0)
    assert np.allclose(curves.moving_average(ramp, 5), ramp)  # a symmetric mean leaves a line alone
    noisy = np.array([0.0, 2.0] * 10)
    smooth = curves.moving_average(noisy, 5)
    assert smooth[0] == 0.0 and smooth[-1] == 2.0  # the ends are the logged values
    assert np.all(np.abs(smooth[2:-2] - 1.0) <= 0.2 + 1e-9)
    gap = curves.moving_average(np.array([1.0, np.nan, 3.0, 5.0, 7.0]), 3)
    assert np.isnan(gap[1]) and gap[2] == 4.0
    assert curves.smoothing_window(4) == 3 and np.array_equal(curves.moving_average(noisy, 1), noisy)


def _png_panels(path: Path) -> list[str]:
    with Image.open(path) as im:
        return json.loads(im.info[curves.PNG_PANELS_KEY])


def test_png_of_the_configured_size_with_one_panel_per_quantity(seg_run: Path, cls_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "curves.png"
    calls = []
    cfg = curves.CurvesConfig(runs=(seg_run, cls_run), out=out, width=900, height=640)
    assert curves.run(cfg, progress=lambda done, total, info="": calls.append((done, total))).path == out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (900, 640)
        im.verify()
    runs = [curves.read_metrics(seg_run), curves.read_metrics(cls_run)]
    assert _png_panels(out) == [p.title for p in curves.plan_panels(runs)]
    assert calls[-1] == (3, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]  # no temporary file left


def test_default_height_grows_with_the_panels(cls_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.png"
    curves.run(curves.CurvesConfig(runs=(cls_run,), out=out, width=601))
    with Image.open(out) as im:
        assert im.size == (601, curves.ROW_HEIGHT + curves.HEADER_HEIGHT)  # loss | lr: one row
    assert _png_panels(out) == ["loss", "learning rate"]


def test_an_existing_picture_is_replaced(cls_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.png"
    out.write_bytes(b"old")
    curves.run(curves.CurvesConfig(runs=(cls_run,), out=out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_labels(tmp_path: Path) -> None:
    a, b = tmp_path / "x" / "s0" / "train", tmp_path / "y" / "s0" / "train"
    assert curves.default_labels([a, tmp_path / "cam" / "classifier"]) == ("s0/train", "cam/classifier")
    assert curves.default_labels([a, b]) == (str(a), str(b))  # parent/name would clash


# ---------------------------------------------------------------- CLI


def _invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_cli_writes_the_picture(seg_run: Path, cls_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.png"
    r = _invoke(["curves", seg_run, cls_run, "--out", out, "--label", "seg", "--label", "cls", "--width", 800])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.stdout.replace("\n", "")
    with Image.open(out) as im:
        assert im.size[0] == 800
    assert "val mIoU (%)" in _png_panels(out)


def test_cli_bad_line_is_one_error_line(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", [_step(10, 1.0)], tail='{"iteration": 20,\n{"iteration": 30, "loss": 1}\n')
    out = tmp_path / "c.png"
    r = _invoke(["curves", run, "--out", out])
    assert r.exit_code == 2 and "Traceback" not in r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "line 2" in lines[0], r.stderr
    assert not out.exists()


def test_cli_non_png_out_is_refused(seg_run: Path, tmp_path: Path) -> None:
    r = _invoke(["curves", seg_run, "--out", tmp_path / "c.svg"])
    assert r.exit_code == 2 and "must be a .png" in r.stderr and not (tmp_path / "c.svg").exists()


def test_a_folder_of_runs_names_them(seg_run: Path, tmp_path: Path) -> None:
    with pytest.raises(curves.MetricsError, match=r"graphcut-s0 has no metrics.jsonl; the run folders inside it are .*graphcut-s0/train"):
        curves.CurvesConfig(runs=(seg_run.parent,), out=tmp_path / "c.png")


def test_an_odd_number_of_panels_leaves_one_cell_empty(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "s0" / "train", [_seg(10, 3.0), _seg(20, 2.0)])  # no validation: 5 panels
    out = tmp_path / "c.png"
    curves.run(curves.CurvesConfig(runs=(run,), out=out, width=700))
    with Image.open(out) as im:
        assert im.size == (700, 3 * curves.ROW_HEIGHT + curves.HEADER_HEIGHT)
    assert _png_panels(out) == ["loss (total)", "seed loss", "boundary loss", "supervised pixels (%)", "learning rate"]
