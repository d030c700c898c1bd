"""Bad input, one test per class of failure (issue 13): names that are paths, reruns that
would throw work away, damaged or edited artifacts, unsafe advice, small images.

Each checks the one line a user sees (a ``DgcnError``, which the CLI prints without a
traceback) and that nothing was read or written outside the folders named.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import saliency_bg
from stages.core.datasets import DataConfig
from stages.core.cues.saliency import compute_saliency
from stages.core.datasets import build_dataset
from stages.core.datasets.demo import DemoConfig, write_demo_dataset
from stages.core.errors import ArtifactError, CheckpointError, DgcnError, OutputExistsError
from stages.core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter, partial_path
from stages.core.nets.weights import load_weights_file

runner = CliRunner()


def _copy_demo(demo_root: Path, dst: Path) -> Path:
    shutil.copytree(demo_root, dst)
    return dst


# ----------------------------------------------------------------- 1. names are not paths


def test_split_name_that_is_a_path_is_refused_before_anything_is_read(tmp_path, demo_root):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.txt").write_text("train_0000\n")
    root = _copy_demo(demo_root, tmp_path / "demo")
    rel = "../../../elsewhere/x"
    with pytest.raises(DgcnError, match=r"split name '\.\./\.\./\.\./elsewhere/x' from dataset 'voc' is not a plain name"):
        build_dataset("voc", root, rel, cache_dir=tmp_path / "cache")
    # through the CLI: one line, exit 1, no traceback, nothing written
    out = tmp_path / "out"
    res = runner.invoke(app, ["saliency-bg", "--dataset", "voc", "--data-root", str(root), "--split", rel,
                              "--out", str(out / "s.h5")])
    assert res.exit_code != 0 and "not a plain name" in res.output and "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_image_ids_from_a_list_file_must_be_plain_and_unique(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path / "demo")
    lists = root / "ImageSets" / "Segmentation"
    (lists / "dup.txt").write_text("train_0000\ntrain_0001\ntrain_0000\n")
    with pytest.raises(DgcnError, match=r"lists image id 'train_0000' more than once"):
        build_dataset("voc", root, "dup", cache_dir=tmp_path / "cache")
    (root / "classes.txt").write_text("background\nsquare\n")
    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    (folder / "classes.txt").write_text("background\nsquare\n")
    (folder / "train.csv").write_text("image,labels\n..evil,square\n")  # the id is the stem: '.'
    with pytest.raises(DgcnError, match=r"image id '\.' from split 'train' of dataset 'folder' is not a plain name"):
        build_dataset("folder", folder, "train", cache_dir=tmp_path / "cache")
    (folder / "train.csv").write_text("image,labels\na.jpg,square\nsub/a.png,\n")
    with pytest.raises(DgcnError, match=r"train\.csv:3: image 'a' is listed twice"):
        build_dataset("folder", folder, "train", cache_dir=tmp_path / "cache")


def test_artifact_item_ids_are_checked_on_write_and_read(tmp_path):
    meta = ArtifactMeta(kind="seeds", dataset="demo", split="train", class_names=("background", "a"))
    with ArtifactWriter(tmp_path / "s.h5", meta) as w:
        with pytest.raises(DgcnError, match=r"image id '\.\.' .* is not a plain name"):
            w.write("..", label=np.zeros((2, 2), np.uint8))
        w.write("ok", label=np.zeros((2, 2), np.uint8))
        w.finish()
    with h5py.File(tmp_path / "s.h5", "a") as f:  # a file made by someone else
        f["items"].copy("ok", ".hidden")
    with pytest.raises(DgcnError, match=r"item id '\.hidden' from .*s\.h5 is not a plain name"):
        ArtifactReader(tmp_path / "s.h5")


# ----------------------------------------------------------------- 2. reruns lose nothing


def _interrupted_saliency(tmp_path: Path, data: DataConfig) -> tuple[saliency_bg.SaliencyConfig, Path]:
    cfg = saliency_bg.SaliencyConfig(out=tmp_path / "sal.h5", data=data)
    calls = {"n": 0}

    def stop_after_two(done, total):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        saliency_bg.run(cfg, progress=stop_after_two)
    return cfg, partial_path(cfg.out)


def test_rerun_without_resume_refuses_to_restart_an_interrupted_stage(tmp_path, demo_root):
    data = DataConfig(dataset="demo", data_root=demo_root, split="train")
    cfg, partial = _interrupted_saliency(tmp_path, data)
    before = partial.stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match=r"interrupted run left .*sal\.h5\.partial \(2 of 12 images done\); "
                                                r"pass --resume to continue it or --overwrite to start again"):
        saliency_bg.run(cfg)
    assert partial.stat().st_mtime_ns == before  # untouched
    res = runner.invoke(app, ["saliency-bg", "--dataset", "demo", "--data-root", str(demo_root), "--split", "train",
                              "--out", str(cfg.out)])
    assert res.exit_code != 0 and "(2 of 12 images done)" in res.output
    # --resume continues it
    from dataclasses import replace
    assert saliency_bg.run(replace(cfg, resume=True)).path == cfg.out
    with ArtifactReader(cfg.out) as r:
        assert len(r) == 12


def test_demo_writer_never_replaces_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "precious"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    cfg = DemoConfig(n_train=2, n_val=1, size=48)
    with pytest.raises(DgcnError, match="exists; pass --overwrite"):
        write_demo_dataset(mine, cfg)
    with pytest.raises(DgcnError, match="is not a demo dataset"):
        write_demo_dataset(mine, cfg, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    demo = write_demo_dataset(tmp_path / "demo", cfg)
    assert write_demo_dataset(demo, cfg, overwrite=True) == demo  # its own output: replaced


# ----------------------------------------------------------------- 4. damaged or edited artifacts


@pytest.fixture
def seeds_h5(tmp_path) -> Path:
    meta = ArtifactMeta(kind="seeds", dataset="demo", split="train", class_names=("background", "a"))
    rng = np.random.default_rng(0)
    with ArtifactWriter(tmp_path / "seeds.h5", meta) as w:
        for i in ("img_a", "img_b"):
            w.write(i, label=rng.integers(0, 2, (40, 40)).astype(np.uint8))
        return w.finish()


def test_an_item_edited_after_writing_is_refused(seeds_h5):
    with h5py.File(seeds_h5, "a") as f:
        f["items/img_b/label"][0, 0] = 255
    with ArtifactReader(seeds_h5) as r:
        assert r.get("img_a", "label").shape == (40, 40)  # the untouched item still reads
        with pytest.raises(ArtifactError, match=r"seeds\.h5: image img_b was changed after the file was written"):
            r.get("img_b", "label")


def test_damaged_compressed_data_names_file_and_image(seeds_h5):
    with h5py.File(seeds_h5, "r") as f:
        offset = f["items/img_b/label"].id.get_chunk_info(0).byte_offset  # its compressed chunk
    data = bytearray(seeds_h5.read_bytes())
    for k in range(offset, offset + 64):
        data[k] ^= 0xFF
    seeds_h5.write_bytes(bytes(data))
    with ArtifactReader(seeds_h5) as r:
        with pytest.raises(ArtifactError, match=r"seeds\.h5: (the data of image img_b cannot be read|image img_b was changed)"):
            r.get("img_b", "label")


# ----------------------------------------------------------------- 6. no unsafe advice


def test_refused_weights_file_never_advises_weights_only_false(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_weights_file(path)
    msg = str(err.value)
    assert "system" in msg and "refusing to unpickle" in msg  # names what it refused
    assert "weights_only=False" not in msg and "False" not in msg and "trust" not in msg
    assert "\n" not in msg


# ----------------------------------------------------------------- 7. small images


@pytest.mark.parametrize("size", [48, 64])
def test_mbd_saliency_works_on_small_images(tmp_path, size):
    root = write_demo_dataset(tmp_path / "d", DemoConfig(n_train=3, n_val=1, size=size))
    ds = build_dataset("demo", root, "train", cache_dir=tmp_path / "cache")
    for image_id in ds.ids:
        sal = compute_saliency(ds.load_image(image_id))
        fg = ds.load_mask(image_id) > 0
        assert sal.max() > 0.5, f"{size} px: all-zero saliency"
        assert sal[fg].mean() > sal[~fg].mean() + 0.3  # and it finds the objects


# ----------------------------------------------------------------- 4. oversized images


def _bomb_jpeg_to_png(path: Path, side: int = 30000) -> None:
    """A tiny PNG whose header declares side x side pixels (the CRC fixed up)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8  # after the signature: length (4), type (4), data (13), crc (4)
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", side, side)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 8 + 13])) & 0xFFFFFFFF
    data[ihdr + 8 + 13:ihdr + 8 + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_decompression_bomb_is_one_line_in_every_training_stage(tmp_path, demo_root):
    from stages import cam, train
    from stages.core.train.fit import OptimConfig, RunConfig
    from stages.core.train.segmenter import ModelConfig
    from stages.train import TrainConfig

    root = _copy_demo(demo_root, tmp_path / "demo")
    victim = root / "JPEGImages" / "train_0003.jpg"
    _bomb_jpeg_to_png(victim)  # PIL reads by content, not by suffix
    data = DataConfig(dataset="voc", data_root=root, split="train")
    bomb = r"train_0003\.jpg declares more than twice PIL's limit .* decompression bomb"
    with pytest.raises(DgcnError, match=bomb):
        saliency_bg.run(saliency_bg.SaliencyConfig(out=tmp_path / "sal.h5", data=data))
    with pytest.raises(DgcnError, match=bomb):
        cam.run(cam.CamConfig(run=RunConfig(out=tmp_path / "cam", device="cpu"), data=data, optim=OptimConfig(epochs=1, batch_size=12, crop=32)))
    meta = ArtifactMeta(kind="seeds", dataset="voc", split="train", class_names=build_dataset("voc", root, "train", cache_dir=tmp_path / "c").class_names)
    with ArtifactWriter(tmp_path / "seeds.h5", meta) as w:
        for i in build_dataset("voc", root, "train", cache_dir=tmp_path / "c").ids:
            w.write(i, label=np.full((64, 64), 255, np.uint8))
        seeds = w.finish()
    cfg = TrainConfig(run=RunConfig(out=tmp_path / "run", device="cpu"), seeds=seeds, data=data,
                      model=ModelConfig("tiny", "none"), optim=OptimConfig(epochs=1, batch_size=12, crop=32),
                      boundary_loss="none", crf_workers=0)
    with pytest.raises(DgcnError, match=bomb):
        train.run(cfg)


def test_inspect_and_readers_name_an_unexpected_group(seeds_h5):
    with h5py.File(seeds_h5, "a") as f:
        f["items/img_a"].create_group("surprise")
        f["items"].create_dataset("img_c", data=np.zeros(3))
    res = runner.invoke(app, ["inspect", str(seeds_h5)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "seeds.h5: the data of image img_a cannot be read" in " ".join(res.output.split())
    with ArtifactReader(seeds_h5) as r:
        with pytest.raises(ArtifactError, match="image img_c cannot be read"):
            r.get("img_c", "label")


# ----------------------------------------------------------------- 5. artifacts from other images


def test_artifacts_made_from_other_images_with_the_same_ids_are_refused(tmp_path):
    from stages import evaluate, train
    from stages.core.train.fit import OptimConfig, RunConfig
    from stages.core.train.segmenter import ModelConfig
    from stages.train import TrainConfig

    small = write_demo_dataset(tmp_path / "d64", DemoConfig(n_train=4, n_val=1, size=64))
    large = write_demo_dataset(tmp_path / "d96", DemoConfig(n_train=4, n_val=1, size=96))
    ds64 = build_dataset("demo", small, "train", cache_dir=tmp_path / "c")
    meta = ArtifactMeta(kind="seeds", dataset="demo", split="train", class_names=ds64.class_names)
    with ArtifactWriter(tmp_path / "seeds64.h5", meta) as w:
        for i in ds64.ids:
            w.write(i, label=ds64.load_mask(i))
        seeds = w.finish()
    data96 = DataConfig(dataset="demo", data_root=large, split="train")
    other = r"seeds64\.h5: image train_0000 is 64x64 there but 96x96 in this dataset; it was made from other images"
    with pytest.raises(DgcnError, match=other):
        evaluate.run(evaluate.EvaluateConfig(source=seeds, data=data96))
    cfg = TrainConfig(run=RunConfig(out=tmp_path / "run", device="cpu"), seeds=seeds, data=data96,
                      model=ModelConfig("tiny", "none"), optim=OptimConfig(epochs=1, batch_size=4, crop=32),
                      boundary_loss="none", crf_workers=0)
    with pytest.raises(DgcnError, match=r"seeds64\.h5: image train_\d+ is 64x64 there but 96x96"):
        train.run(cfg)
    # on its own images it is fine
    report = evaluate.run(evaluate.EvaluateConfig(source=seeds, data=DataConfig(dataset="demo", data_root=small, split="train"))).details
    assert report.metrics.miou > 0.99


# ----------------------------------------------------------------- 3. option values


@pytest.mark.parametrize("args, fragment", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "-1"], "--epochs"), (["--lr", "nan"], "--lr"), (["--lr", "0"], "--lr must be"),
    (["--lr", "-1"], "--lr"), (["--batch-size", "0"], "--batch-size"), (["--crop", "0"], "--crop"),
    (["--workers", "-1"], "--workers"), (["--nproc", "0"], "--nproc"), (["--rescale", "0,1"], "--scale-range"), (["--ema-decay", "1"], "--ema-decay"),
    (["--expander-opt", "k=abc"], "option k must be an integer"), (["--expander-opt", "theta=nan"], "theta"),
    (["--boundary-weight", "inf"], "--boundary-weight"),
])
def test_train_option_values_are_checked(tmp_path, demo_root, args, fragment):
    seeds = tmp_path / "seeds.h5"
    seeds.write_bytes(b"not used: the options fail first")
    res = runner.invoke(app, ["train", "--dataset", "demo", "--data-root", str(demo_root), "--seeds", str(seeds),
                              "--backbone", "tiny", "--weights", "none", "--out", str(tmp_path / "run"), *args])
    assert res.exit_code != 0 and "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert fragment in " ".join(res.output.split()), res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cmd, args, fragment", [
    ("seeds", ["--fg-thresh", "5"], "--fg-thresh"), ("seeds", ["--fg-thresh", "nan"], "--fg-thresh"),
    ("cam", ["--scales", "1e-9"], "--scales must be a finite number >= 0.1"), ("infer", ["--scales", "0.5,nan"], "--scales"),
    ("demo-data", ["--size", "8"], "--size"), ("evaluate", ["--cam-bg-thresh", "nan"], "--cam-bg-thresh"),
])
def test_other_option_values_are_checked(tmp_path, demo_root, cmd, args, fragment):
    dummy = tmp_path / "x.h5"
    dummy.write_bytes(b"x")
    base = {
        "seeds": ["seeds", "--dataset", "demo", "--data-root", str(demo_root), "--cams", str(dummy), "--saliency", str(dummy), "--out", str(tmp_path / "s.h5")],
        "cam": ["cam", "--dataset", "demo", "--data-root", str(demo_root), "--out", str(tmp_path / "cam")],
        "infer": ["infer", "--dataset", "demo", "--data-root", str(demo_root), "--checkpoint", str(dummy), "--out", str(tmp_path / "pred")],
        "demo-data": ["demo-data", "--out", str(tmp_path / "demo")],
        "evaluate": ["evaluate", str(dummy), "--dataset", "demo", "--data-root", str(demo_root)],
    }[cmd]
    res = runner.invoke(app, [*base, *args])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert fragment in " ".join(res.output.split()), res.output


def test_the_python_api_refuses_the_same_values():
    from stages.core.cues.seeding import FusionConfig
    from stages.core.train.fit import OptimConfig, RunConfig

    for bad in (dict(epochs=0), dict(lr=float("nan")), dict(batch_size=0), dict(crop=0), dict(lr=-1.0)):
        with pytest.raises(DgcnError):
            OptimConfig(**bad)
    with pytest.raises(DgcnError, match="--workers"):
        RunConfig(out=Path("x"), workers=-1)
    with pytest.raises(DgcnError, match="--fg-thresh"):
        FusionConfig(fg_thresh=5.0)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, make_train_config):
    from stages import train
    from stages.core.io.checkpoint import load_checkpoint

    cfg = make_train_config(tmp_path / "run", optim=dict(lr=1e25, ckpt_every=1, epochs=3))
    with pytest.raises(DgcnError, match=r"the training loss became (nan|inf) at iteration \d+ .* lower --lr"):
        train.run(cfg)
    assert not (tmp_path / "run" / "final.pt").exists()
    if (tmp_path / "run" / "last.pt").exists():
        state = load_checkpoint(tmp_path / "run" / "last.pt")
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path, demo_root, monkeypatch):
    from stages import saliency_bg as stage

    def boom(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(stage, "run", boom)
    args = ["saliency-bg", "--dataset", "demo", "--data-root", str(demo_root), "--out", str(tmp_path / "s.h5")]
    res = runner.invoke(app, args)
    assert res.exit_code == 3 and "internal error (ZeroDivisionError: a bug)" in res.output and "Traceback" not in res.output
    monkeypatch.setenv("DGCN_DEBUG", "1")
    res = runner.invoke(app, args)
    assert isinstance(res.exception, ZeroDivisionError)
