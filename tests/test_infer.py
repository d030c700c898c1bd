"""``infer`` and the shared segmentation helpers (``stages.core.predict.segmenter``)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import evaluate as evaluate_stage
from stages import infer as infer_stage
from stages.core.datasets import DataConfig
from stages.core.datasets.demo import DEMO_CLASSES, DemoConfig, write_demo_dataset
from stages.core.errors import ArtifactError, CheckpointError, OutputExistsError
from stages.core.io.artifacts import ArtifactReader, partial_path
from stages.core.io.checkpoint import save_checkpoint
from stages.core.nets import build_classifier, build_segmenter
from stages.core.predict.segmenter import load_segmenter, load_segmenter_checkpoint, predict_probs, predict_probs_batch

CLASSES3 = ["background", "a", "b"]


def _segmenter(num_classes: int, seed: int = 0):
    torch.manual_seed(seed)
    seg = build_segmenter("tiny", num_classes)
    # The ASPP's std-0.01 init gives near-uniform softmax; larger weights make
    # the predictions (and so the flip test) discriminating.
    for conv in seg.head.branches:
        torch.nn.init.normal_(conv.weight, std=0.5)
    return seg.eval()


def _checkpoint(path: Path, class_names=CLASSES3, seed: int = 0) -> Path:
    seg = _segmenter(len(class_names), seed)
    save_checkpoint(path, {"model": seg.state_dict(), "model_config": seg.init_args, "config": {"class_names": list(class_names)}})
    return path


def _rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


# ---------------------------------------------------------------- segment.py


def test_predict_probs_flip_consistent_normalised_full_size():
    model = _segmenter(3)
    rng = np.random.default_rng(0)
    image = _rgb(rng, 37, 53)  # odd sizes: scaled sizes and stride 8 do not divide evenly
    mirrored = np.ascontiguousarray(image[:, ::-1])
    p = predict_probs(model, image, scales=(0.75, 1.0, 1.25), flip=True)
    assert p.shape == (3, 37, 53) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)
    pm = predict_probs(model, mirrored, scales=(0.75, 1.0, 1.25), flip=True)
    np.testing.assert_allclose(pm, p[:, :, ::-1], atol=1e-5)
    # without flip averaging the network itself is not mirror-symmetric: the test above has teeth
    q = predict_probs(model, image, scales=(1.0,), flip=False)
    qm = predict_probs(model, mirrored, scales=(1.0,), flip=False)
    assert np.abs(qm - q[:, :, ::-1]).max() > 1e-3
    np.testing.assert_allclose(q.sum(axis=0), 1.0, atol=1e-5)


def test_predict_probs_batch_matches_single_images():
    model = _segmenter(3)
    rng = np.random.default_rng(1)
    images = [_rgb(rng, 21, 30), _rgb(rng, 21, 30), _rgb(rng, 9, 5)]
    batch = predict_probs_batch(model, images, scales=(0.5, 1.0), flip=True)
    for im, p in zip(images, batch):
        assert p.shape == (3, *im.shape[:2])
        np.testing.assert_allclose(p, predict_probs(model, im, scales=(0.5, 1.0), flip=True), atol=1e-5)


def test_load_segmenter_roundtrip_and_refusals(tmp_path):
    ckpt = _checkpoint(tmp_path / "seg.pt")
    loaded = load_segmenter_checkpoint(ckpt)
    assert loaded.class_names == tuple(CLASSES3) and not loaded.model.training
    ref = _segmenter(3)
    for k, v in ref.state_dict().items():
        assert torch.equal(load_segmenter(ckpt).state_dict()[k], v)
    clf = build_classifier("tiny", 2)
    save_checkpoint(tmp_path / "clf.pt", {"model": clf.state_dict(), "model_config": clf.init_args, "config": {}})
    with pytest.raises(CheckpointError, match="dgcn train"):
        load_segmenter(tmp_path / "clf.pt")
    with pytest.raises(CheckpointError, match="predicts 3 classes"):
        loaded.check_classes(DEMO_CLASSES, "dataset 'demo'")


# ---------------------------------------------------------------- infer


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Good images of several formats and sizes, one corrupt file and one truncated JPEG."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_rgb(rng, 40, 57)).save(folder / "rgb.jpg", quality=90)
    Image.fromarray(_rgb(rng, 33, 47)[..., 0], mode="L").save(folder / "grey.png")
    rgba = np.concatenate([_rgb(rng, 50, 31), rng.integers(0, 256, (50, 31, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(_rgb(rng, 64, 64)).save(folder / "big.JPEG", quality=90)
    (folder / "corrupt.jpg").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    Image.fromarray(_rgb(rng, 120, 90)).save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    (folder / "notes.txt").write_text("not an image")
    sizes = {"rgb": (40, 57), "grey": (33, 47), "rgba": (50, 31), "big": (64, 64)}
    return folder, sizes


def test_cli_infer_folder_mixed_formats_with_bad_files(tmp_path, image_folder):
    folder, sizes = image_folder
    ckpt = _checkpoint(tmp_path / "seg.pt")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "infer", "--checkpoint", str(ckpt), "--images", str(folder), "--out", str(out),
        "--workers", "2", "--batch-size", "2", "--save-probs", "--scales", "0.75,1",
    ])
    assert result.exit_code == 0, result.output
    assert "4 predicted" in result.output and "2 failed" in result.output
    warnings = [ln for ln in result.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2
    assert any("corrupt" in w for w in warnings) and any("truncated" in w for w in warnings)
    with ArtifactReader(out / "pred.h5", kind="predictions", class_names=CLASSES3) as r:
        assert r.ids == sorted(sizes)
        assert sorted(r.unreadable) == ["corrupt", "truncated"]  # recorded in the finished file
        assert (r.dataset, r.split) == ("images", "photos")
        assert r.extra["scales"] == [0.75, 1.0] and r.extra["flip"] is True and r.extra["crf"] is True
        for image_id, (h, w) in sizes.items():
            label = r.get(image_id, "label")
            assert label.shape == (h, w) and label.dtype == np.uint8 and label.max() < 3
            prob = r.get(image_id, "prob")
            assert prob.shape == (3, h, w) and prob.dtype == np.float16
            np.testing.assert_array_equal(label, prob.astype(np.float32).argmax(0))
            with Image.open(out / "png" / f"{image_id}.png") as im:
                assert im.mode == "P" and im.size == (w, h)
                np.testing.assert_array_equal(np.asarray(im), label)
    assert sorted(p.stem for p in (out / "png").iterdir()) == sorted(sizes)
    # a finished output is not replaced without --overwrite
    again = CliRunner().invoke(app, ["infer", "--checkpoint", str(ckpt), "--images", str(folder), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_resume_after_interruption_skips_done_images(tmp_path, image_folder, monkeypatch):
    folder, sizes = image_folder
    ckpt = _checkpoint(tmp_path / "seg.pt")
    out = tmp_path / "out"
    cfg = infer_stage.InferConfig(checkpoint=ckpt, out=out, images=folder, scales=(1.0,), crf=False)
    real = infer_stage.predict_probs_batch
    seen: list[int] = []

    def stop_after_two(model, images, *args, **kwargs):
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(len(images))
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(infer_stage, "predict_probs_batch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        infer_stage.run(cfg)
    assert partial_path(out / "pred.h5").exists() and not (out / "pred.h5").exists()
    with h5py.File(partial_path(out / "pred.h5"), "r") as f:
        first = sorted(f["items"].keys())
    assert len(first) == 2
    # a plain rerun must not discard the interrupted work, nor mix protocols in
    with pytest.raises(OutputExistsError, match="--resume"):
        infer_stage.run(cfg)
    with pytest.raises(ArtifactError, match="scales"):
        infer_stage.run(infer_stage.InferConfig(checkpoint=ckpt, out=out, images=folder, scales=(0.5,), crf=False, resume=True))

    for image_id in first:  # a PNG rewritten on resume would reappear
        (out / "png" / f"{image_id}.png").unlink()
    computed: list[np.ndarray] = []

    def counting(model, images, *args, **kwargs):
        computed.extend(images)
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(infer_stage, "predict_probs_batch", counting)
    summary = infer_stage.run(infer_stage.InferConfig(checkpoint=ckpt, out=out, images=folder, scales=(1.0,), crf=False, resume=True)).details
    assert (summary.total, summary.done, summary.skipped, len(summary.failed)) == (6, 2, 2, 2)
    assert len(computed) == 2
    assert sorted(p.stem for p in (out / "png").iterdir()) == sorted(set(sizes) - set(first))
    with ArtifactReader(out / "pred.h5", kind="predictions") as r:
        assert r.ids == sorted(sizes)
    # resuming a finished run keeps it and computes nothing (the unreadable files are not retried)
    computed.clear()
    summary = infer_stage.run(infer_stage.InferConfig(checkpoint=ckpt, out=out, images=folder, scales=(1.0,), crf=False, resume=True)).details
    assert (summary.total, summary.done, summary.skipped) == (6, 0, 4) and not computed


def test_cli_refuses_classifier_and_wrong_class_count(tmp_path, demo_root):
    clf = build_classifier("tiny", 5)
    save_checkpoint(tmp_path / "clf.pt", {"model": clf.state_dict(), "model_config": clf.init_args, "config": {}})
    ckpt3 = _checkpoint(tmp_path / "seg3.pt")
    runner = CliRunner()
    base = ["infer", "--dataset", "demo", "--data-root", str(demo_root), "--split", "val", "--out", str(tmp_path / "out")]
    r = runner.invoke(app, [*base, "--checkpoint", str(tmp_path / "clf.pt")])
    assert r.exit_code == 2 and len(_error_lines(r.output)) == 1
    assert "dgcn train" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, [*base, "--checkpoint", str(ckpt3)])
    assert r.exit_code == 2 and len(_error_lines(r.output)) == 1
    assert "3 classes" in r.output and "6" in r.output
    r = runner.invoke(app, ["infer", "--checkpoint", str(ckpt3), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "--images" in r.output
    assert not (tmp_path / "out" / "pred.h5").exists()


def test_infer_demo_split_is_evaluable(tmp_path, cache_dir):
    root = write_demo_dataset(tmp_path / "demo", DemoConfig(n_train=4, n_val=4, size=64))
    ckpt = _checkpoint(tmp_path / "seg.pt", class_names=DEMO_CLASSES)
    data = DataConfig(dataset="demo", data_root=root, split="val")
    calls: list[tuple[int, int]] = []
    summary = infer_stage.run(
        infer_stage.InferConfig(checkpoint=ckpt, out=tmp_path / "pred", data=data, workers=1, batch_size=4),
        progress=lambda done, total: calls.append((done, total)),
    ).details
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (4, 4, 0, ())
    assert calls[-1] == (4, 4)
    ds = data.build()
    with ArtifactReader(summary.path, kind="predictions", class_names=DEMO_CLASSES) as r:
        assert r.ids == sorted(ds.ids) and (r.dataset, r.split) == ("demo", "val")
        assert r.inputs["checkpoint"] and r.extra["scales"] == [0.75, 1.0, 1.25]
        for image_id in ds.ids:
            assert r.get(image_id, "label").shape == ds.load_mask(image_id).shape
    report = evaluate_stage.run(evaluate_stage.EvaluateConfig(source=summary.path, data=data)).details
    assert report.protocol["images"] == 4 and 0.0 <= report.metrics.pixel_acc <= 1.0


def test_infer_images_reads_photos_upright(tmp_path):
    """A phone photo stored sideways with an EXIF Orientation tag is predicted upright: the
    prediction has the size people see (the tag applied), not the stored one."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "phone"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(_rgb(rng, 30, 50)).save(folder / "portrait.jpg", quality=90, exif=exif.tobytes())
    ckpt = _checkpoint(tmp_path / "seg.pt")
    summary = infer_stage.run(infer_stage.InferConfig(checkpoint=ckpt, out=tmp_path / "out", images=folder,
                                                      scales=(1.0,), crf=False)).details
    with ArtifactReader(summary.path, kind="predictions") as r:
        assert r.label("portrait").shape == (50, 30)
    with Image.open(tmp_path / "out" / "png" / "portrait.png") as im:
        assert im.size == (30, 50)
