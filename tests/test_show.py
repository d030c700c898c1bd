"""``show``: grid size from the layout constants, panel colours, the CLI and its errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import show as show_stage
from stages.core.datasets import DataConfig
from stages.core.datasets.demo import DEMO_CLASSES, DemoConfig, write_demo_dataset
from stages.core.errors import DgcnError
from stages.core.eval import render
from stages.core.io.artifacts import ArtifactMeta, ArtifactWriter
from stages.core.io.images import resize_label, voc_palette

runner = CliRunner()
TILE = 64  # the demo images are 64 px, so every panel fills its cell
SEED_CLASS = 2
HOT = (40, 56)  # CAM rows/cols set to 1.0, clear of the class-name caption at the top
SEED_BLOCK = (8, 12)  # seed grid cells (16x16 grid) holding SEED_CLASS; the rest is 255


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("show") / "demo", DemoConfig(n_train=4, n_val=4, size=64))


def _meta(kind: str, classes=DEMO_CLASSES) -> ArtifactMeta:
    return ArtifactMeta(kind=kind, dataset="demo", split="train", class_names=classes)


@pytest.fixture(scope="module")
def artifacts(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("show-artifacts")
    ids = (demo / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    paths = {k: folder / f"{k}.h5" for k in ("cams", "saliency", "seeds")}
    cam = np.zeros((1, 64, 64), np.float16)
    cam[0, HOT[0] : HOT[1], HOT[0] : HOT[1]] = 1.0
    sal = np.tile(np.linspace(0, 1, 64, dtype=np.float16), (64, 1))
    # seeds at a coarser grid than the image, as imported DSRG cues are
    seeds = np.full((16, 16), 255, np.uint8)
    seeds[SEED_BLOCK[0] : SEED_BLOCK[1], SEED_BLOCK[0] : SEED_BLOCK[1]] = SEED_CLASS
    with ArtifactWriter(paths["cams"], _meta("cams")) as w:
        for i in ids:
            w.write(i, cam=cam, classes=np.array([1], np.uint8))
        w.finish()
    with ArtifactWriter(paths["saliency"], _meta("saliency")) as w:
        for i in ids:
            w.write(i, saliency=sal)
        w.finish()
    with ArtifactWriter(paths["seeds"], _meta("seeds")) as w:
        for i in ids:
            w.write(i, label=seeds)
        w.finish()
    wrong = folder / "wrong_classes.h5"
    with ArtifactWriter(wrong, _meta("seeds", classes=("background", "cat"))) as w:
        for i in ids:
            w.write(i, label=seeds)
        w.finish()
    paths["wrong_classes"] = wrong
    return paths


def _pixel(im: Image.Image, row: int, col: int, y: int, x: int) -> tuple[int, int, int]:
    return im.getpixel((col * TILE + x, render.HEADER_H + row * TILE + y))


def test_grid_size_and_panel_colours(demo: Path, artifacts: dict[str, Path], tmp_path: Path, cache_dir: Path) -> None:
    cfg = show_stage.ShowConfig(
        out=tmp_path / "sub" / "grid.png",
        data=DataConfig(dataset="demo", data_root=demo, split="train"),
        cams=artifacts["cams"], saliency=artifacts["saliency"], seeds=artifacts["seeds"],
        gt=False, ids=("train_0001", "train_0003"), tile=TILE,
    )
    path = show_stage.run(cfg).path
    assert path == cfg.out and not path.with_name("grid.png.partial").exists()
    im = Image.open(path).convert("RGB")
    n_cols, n_rows = 4, 2  # image | CAM | saliency | seeds
    # heat bar + seed class + "unlabelled" fit on one legend line at this width
    legend_h = 2 * render.LEGEND_PAD + render.LEGEND_ROW_H
    assert im.size == (n_cols * TILE, render.HEADER_H + n_rows * TILE + legend_h)
    seed_px = SEED_BLOCK[0] * 4 + 8  # inside the seeded block after the 4x nearest upscale
    for row in range(n_rows):
        assert _pixel(im, row, 3, seed_px, seed_px) == tuple(voc_palette()[SEED_CLASS])
        assert _pixel(im, row, 3, 60, 4) == render.UNLABELLED_RGB
        r, g, b = _pixel(im, row, 1, (HOT[0] + HOT[1]) // 2, (HOT[0] + HOT[1]) // 2)
        assert r > 100 and r > g + 80 and r > b + 80, (r, g, b)
        r, g, b = _pixel(im, row, 1, 60, 4)
        assert b > 100 and b > r + 80, (r, g, b)
        # saliency ramps left to right: blue at the left edge, red at the right
        left, right = _pixel(im, row, 2, 40, 1), _pixel(im, row, 2, 40, TILE - 2)
        assert left[2] > left[0] and right[0] > right[2]


def test_render_helpers() -> None:
    assert tuple(render.colorize(np.array([[255]], np.uint8))[0, 0]) == render.UNLABELLED_RGB
    assert tuple(render.colorize(np.array([[1]], np.uint8))[0, 0]) == tuple(voc_palette()[1])
    hot, cold = render.heatmap(np.array([1.0, 0.0]))
    assert hot[0] > 100 and hot[1:].max() < 20 and cold[2] > 100 and cold[:2].max() < 20
    assert render.fit_size((50, 100), 160) == (80, 160)
    lab = resize_label(np.array([[1, 2], [3, 4]], np.uint8), (4, 4))
    assert set(np.unique(lab)) == {1, 2, 3, 4}  # nearest: no values in between
    image = np.zeros((2, 2, 3), np.uint8)
    assert tuple(render.overlay(image, np.full((2, 2), 255, np.uint8), 0.5)[0, 0]) == tuple(
        round(c / 2) for c in render.UNLABELLED_RGB
    )


def test_random_pick_is_reproducible(demo: Path, cache_dir: Path) -> None:
    ds = DataConfig(dataset="demo", data_root=demo, split="train").build()
    cfg = show_stage.ShowConfig(out=Path("unused.png"), n=2, random=True, seed=3)
    a, b = show_stage.choose_ids(cfg, ds, {}), show_stage.choose_ids(cfg, ds, {})
    assert a == b and len(set(a)) == 2 and set(a) <= set(ds.ids)
    assert show_stage.choose_ids(show_stage.ShowConfig(out=Path("x.png"), n=10), ds, {}) == list(ds.ids)
    with pytest.raises(DgcnError, match="nope_1, nope_2"):
        show_stage.choose_ids(show_stage.ShowConfig(out=Path("x.png"), ids=("train_0000", "nope_1", "nope_2")), ds, {})


def _invoke(demo: Path, cache_dir: Path, *extra) -> object:
    args = ["show", "--dataset", "demo", "--data-root", demo, "--split", "train", "--tile", TILE, *extra]
    return runner.invoke(app, [str(a) for a in args], env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "200"})


def test_cli_overlay_with_ground_truth(demo: Path, artifacts: dict[str, Path], tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "grid.png"
    r = _invoke(demo, cache_dir, "--cams", artifacts["cams"], "--seeds", artifacts["seeds"], "--overlay", "--n", 3, "--out", out)
    assert r.exit_code == 0, r.output
    assert str(out) in r.stdout
    im = Image.open(out)
    assert im.width == 4 * TILE  # image | CAM | seeds | ground truth (demo has masks)
    assert im.height > render.HEADER_H + 3 * TILE


def test_cli_wrong_kind_fails(demo: Path, artifacts: dict[str, Path], tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "grid.png"
    r = _invoke(demo, cache_dir, "--seeds", artifacts["saliency"], "--out", out)
    assert r.exit_code == 2, r.output
    assert "'saliency' artifact" in r.output and "dgcn seeds" in r.output
    assert not out.exists()


def test_cli_wrong_classes_and_unknown_ids_fail(demo: Path, artifacts: dict[str, Path], tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "grid.png"
    r = _invoke(demo, cache_dir, "--seeds", artifacts["wrong_classes"], "--out", out)
    assert r.exit_code == 2 and "--dataset" in r.output
    r = _invoke(demo, cache_dir, "--ids", "train_0000,ghost", "--out", out)
    assert r.exit_code == 2 and "ghost" in r.output and "train_0000" not in r.output
    assert not out.exists()
