"""The confusion-matrix metrics and the ``evaluate`` stage, against hand-computed numbers."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from stages import evaluate as ev
from stages.core.datasets import DataConfig
from stages.core.datasets import build_dataset
from stages.core.datasets.demo import DEMO_CLASSES
from stages.core.datasets.voc import VOC_CLASSES
from stages.core.errors import ArtifactError, DatasetError, DgcnError
from stages.core.eval.metrics import ConfusionMatrix
from stages.core.io.artifacts import ArtifactMeta, ArtifactWriter

# -- ConfusionMatrix ---------------------------------------------------------------

GT = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
PRED = np.array([[0, 1, 1], [255, 2, 2]], np.uint8)
# Valid pixels (gt != 255): (0->0) (0->1) (1->1) (1->unlabelled) (2->2); the last pixel is ignored.
EXPECTED_MAT = np.array(
    [
        [1, 1, 0, 0],
        [0, 1, 0, 1],
        [0, 0, 1, 0],
    ]
)


def test_confusion_matrix_by_hand() -> None:
    cm = ConfusionMatrix(3)
    cm.update(GT, PRED)
    np.testing.assert_array_equal(cm.mat, EXPECTED_MAT)
    r = cm.results(["bg", "a", "b"])
    # tp = [1, 1, 1]; gt count = [2, 2, 1]; predicted count = [1, 2, 1]; union = [2, 3, 1]
    np.testing.assert_allclose(r.iou, [1 / 2, 1 / 3, 1.0])
    assert r.miou == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    assert r.pixel_acc == pytest.approx(3 / 5)
    assert r.mean_class_acc == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert r.fwiou == pytest.approx(2 / 5 * 1 / 2 + 2 / 5 * 1 / 3 + 1 / 5 * 1)
    assert r.precision == pytest.approx(3 / 4)  # 4 labelled predictions, 3 right
    assert r.coverage == pytest.approx(4 / 5)  # 4 of 5 valid pixels got a label
    assert r.pixels == 5

    d = r.to_dict()
    assert d["miou"] == round((1 / 2 + 1 / 3 + 1) / 3, 6)
    assert d["per_class_iou"] == {"bg": 0.5, "a": round(1 / 3, 6), "b": 1.0}
    assert d["precision"] == 0.75 and d["coverage"] == 0.8 and d["pixels"] == 5


def test_objects_pooled_by_hand() -> None:
    """An object given another object's class is a miss and a false object, not a hit."""
    gt = np.array([[0, 0, 1, 1], [2, 2, 0, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 2], [2, 255, 1, 0]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(gt, pred)
    r = cm.results(["background", "a", "b"])
    # valid: (0->0) (0->1) (1->1) (1->2) (2->2) (2->unlabelled) (0->1); 4 object pixels, 2 hits;
    # 5 pixels predicted as objects
    assert r.object_recall == pytest.approx(2 / 4)
    assert r.object_precision == pytest.approx(2 / 5)
    assert r.object_share == pytest.approx(5 / 7) and r.object_share_gt == pytest.approx(4 / 7)
    d = r.to_dict()
    assert d["object_recall"] == 0.5 and d["object_precision"] == 0.4
    # without a background class there are no "objects" to pool
    other = cm.results(["sky", "a", "b"])
    assert math.isnan(other.object_recall) and other.to_dict()["object_precision"] is None


def test_confusion_matrix_accumulates_and_merges() -> None:
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(GT, PRED)
    a.update(GT, GT)
    b.update(GT, PRED)
    c = ConfusionMatrix(3)
    c.update(GT, GT)
    b.merge(c)
    np.testing.assert_array_equal(a.mat, b.mat)
    np.testing.assert_array_equal(a.mat, EXPECTED_MAT + np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0]]))


def test_unknown_prediction_ids_count_as_unlabelled() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 2, 7]), np.array([9, 1, 255, 0]))  # gt 7 is out of range: ignored
    np.testing.assert_array_equal(cm.mat, [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]])
    r = cm.results(["bg", "a", "b"])
    assert r.precision == 1.0 and r.coverage == pytest.approx(1 / 3)
    np.testing.assert_allclose(r.iou, [0.0, 1.0, 0.0])


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    cm = ConfusionMatrix(4)  # class 3 is in neither ground truth nor prediction
    cm.update(GT, PRED)
    r = cm.results(["bg", "a", "b", "c"])
    assert math.isnan(r.iou[3])
    assert r.miou == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    assert r.mean_class_acc == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert r.to_dict()["per_class_iou"]["c"] is None
    # predicted but absent from the ground truth: IoU 0, counted in the mean
    cm2 = ConfusionMatrix(4)
    cm2.update(np.array([0, 1]), np.array([3, 1]))
    r2 = cm2.results(["bg", "a", "b", "c"])
    assert r2.iou[3] == 0.0 and math.isnan(r2.iou[2])
    assert r2.miou == pytest.approx((0 + 1 + 0) / 3)


def test_confusion_matrix_shape_mismatch_and_empty() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    r = cm.results(["bg", "a"])
    assert math.isnan(r.miou) and math.isnan(r.precision) and r.pixels == 0
    assert r.to_dict()["miou"] is None


# -- cam_to_label / resize ---------------------------------------------------------------


def test_cam_to_label_by_hand() -> None:
    cam = np.array(
        [
            [[0.1, 0.5, 0.2], [0.9, 0.0, 0.31]],  # class 2
            [[0.2, 0.6, 0.1], [0.1, 0.0, 0.4]],  # class 5
        ],
        np.float16,
    )
    classes = np.array([2, 5])
    np.testing.assert_array_equal(ev.cam_to_label(cam, classes, 0.3), [[0, 5, 0], [2, 0, 5]])
    np.testing.assert_array_equal(ev.cam_to_label(cam, classes, 0.05), [[5, 5, 2], [2, 0, 5]])
    np.testing.assert_array_equal(ev.cam_to_label(cam, classes, 0.95), np.zeros((2, 3)))
    empty = ev.cam_to_label(np.zeros((0, 2, 3), np.float16), np.zeros(0, np.int64), 0.3)
    assert empty.shape == (2, 3) and empty.dtype == np.uint8 and not empty.any()


def test_resize_nearest() -> None:
    lab = np.array([[1, 2], [3, 4]], np.uint8)
    np.testing.assert_array_equal(ev.resize_nearest(lab, (4, 4)), np.kron(lab, np.ones((2, 2), np.uint8)))
    assert ev.resize_nearest(lab, (2, 2)) is lab


# -- evaluate stage ------------------------------------------------------------------------


def val_masks(demo_root: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    ds = build_dataset("demo", demo_root, "val", cache_dir=cache_dir)
    return {i: ds.load_mask(i) for i in ds.ids}


def data_cfg(demo_root: Path, cache_dir: Path) -> DataConfig:
    return DataConfig(dataset="demo", data_root=demo_root, split="val", cache_dir=cache_dir)


def write_items(path: Path, kind: str, per_id: dict[str, dict[str, np.ndarray]], classes=DEMO_CLASSES) -> str:
    with ArtifactWriter(path, ArtifactMeta(kind=kind, dataset="demo", split="val", class_names=classes)) as w:
        for image_id, arrays in per_id.items():
            w.write(image_id, **arrays)
        w.finish()
    from stages.core.io.artifacts import ArtifactReader

    with ArtifactReader(path) as r:
        return r.fingerprint


def test_evaluate_png_folder_equal_to_gt(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "pngs"
    shutil.copytree(demo_root / "SegmentationClass", folder)
    report = ev.run(ev.EvaluateConfig(source=folder, data=data_cfg(demo_root, cache_dir))).details
    m = report.metrics
    assert m.miou == 1.0 and m.pixel_acc == 1.0 and m.precision == 1.0 and m.coverage == 1.0
    assert m.pixels == 6 * 64 * 64
    assert report.protocol["source_kind"] == "png-folder" and report.protocol["images"] == 6


def test_evaluate_png_folder_missing_image(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "pngs"
    shutil.copytree(demo_root / "SegmentationClass", folder)
    (folder / "val_0003.png").unlink()
    with pytest.raises(DgcnError) as err:
        ev.run(ev.EvaluateConfig(source=folder, data=data_cfg(demo_root, cache_dir)))
    assert "val_0003.png" in str(err.value)


def test_evaluate_seeds_precision_and_coverage(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    """Per 64x64 image: rows 0-9 copy the truth, rows 10-14 hold a wrong class, the rest is 255.
    So 15*64 of 64*64 pixels are labelled (coverage 15/64) and 10 of those 15 rows are right
    (precision 2/3), whatever the images hold."""
    gts = val_masks(demo_root, cache_dir)
    seeds = {}
    for image_id, gt in gts.items():
        lab = np.full_like(gt, 255)
        lab[:10] = gt[:10]
        lab[10:15] = gt[10:15] % 5 + 1  # never equal to the truth
        seeds[image_id] = {"label": lab}
    fp = write_items(tmp_path / "seeds.h5", "seeds", seeds)
    report = ev.run(ev.EvaluateConfig(source=tmp_path / "seeds.h5", data=data_cfg(demo_root, cache_dir))).details
    m = report.metrics
    assert m.precision == pytest.approx(2 / 3)
    assert m.coverage == pytest.approx(15 / 64)
    assert m.pixel_acc == pytest.approx(10 / 64)
    assert report.protocol["source_kind"] == "seeds" and report.protocol["source_fingerprint"] == fp

    # the same numbers straight from a confusion matrix
    cm = ConfusionMatrix(len(DEMO_CLASSES))
    for image_id, gt in gts.items():
        cm.update(gt, seeds[image_id]["label"])
    assert m.miou == pytest.approx(cm.results(DEMO_CLASSES).miou)


def test_evaluate_resizes_smaller_pngs_and_refuses_smaller_artifacts(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    from stages.core.io.images import write_palette_png

    gts = val_masks(demo_root, cache_dir)
    ids = sorted(gts)
    # two images at half size (every other pixel; the nearest-neighbour upsampling need not be exact)
    preds = {i: gts[i][::2, ::2].copy() if i in ids[:2] else gts[i] for i in ids}
    (tmp_path / "png").mkdir()
    for i, lab in preds.items():
        write_palette_png(tmp_path / "png" / f"{i}.png", lab)
    report = ev.run(ev.EvaluateConfig(source=tmp_path / "png", data=data_cfg(demo_root, cache_dir))).details
    assert report.protocol["resizing"].startswith("nearest-neighbour")
    assert "(2 of 6 images resized)" in report.protocol["resizing"]
    assert 0.8 < report.metrics.miou < 1.0
    # an artifact is stored at its images' size: another size means other images
    write_items(tmp_path / "pred.h5", "predictions", {i: {"label": lab} for i, lab in preds.items()})
    with pytest.raises(ArtifactError, match="made from other images"):
        ev.run(ev.EvaluateConfig(source=tmp_path / "pred.h5", data=data_cfg(demo_root, cache_dir)))


def test_evaluate_rejects_wrong_artifacts(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    gts = val_masks(demo_root, cache_dir)
    cfg = data_cfg(demo_root, cache_dir)
    write_items(tmp_path / "sal.h5", "saliency", {i: {"saliency": np.zeros((4, 4), np.float16)} for i in gts})
    with pytest.raises(ArtifactError) as err:
        ev.run(ev.EvaluateConfig(source=tmp_path / "sal.h5", data=cfg))
    assert "'saliency'" in str(err.value)

    write_items(tmp_path / "voc.h5", "labels", {i: {"label": g} for i, g in gts.items()}, classes=VOC_CLASSES)
    with pytest.raises(ArtifactError) as err:
        ev.run(ev.EvaluateConfig(source=tmp_path / "voc.h5", data=cfg))
    assert "classes" in str(err.value)

    some = dict(list(gts.items())[:3])
    write_items(tmp_path / "few.h5", "labels", {i: {"label": g} for i, g in some.items()})
    with pytest.raises(ArtifactError) as err:
        ev.run(ev.EvaluateConfig(source=tmp_path / "few.h5", data=cfg))
    assert "lacks 3 image(s)" in str(err.value)


def test_evaluate_needs_masks(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(root / "images" / "a.jpg")
    (root / "classes.txt").write_text("cat\n")
    (root / "val.csv").write_text("image,labels\na.jpg,cat\n")
    with pytest.raises(DatasetError) as err:
        ev.run(ev.EvaluateConfig(source=tmp_path, data=DataConfig("folder", root, "val", cache_dir=cache_dir)))
    assert "no ground-truth masks" in str(err.value)


def _cams(gts: dict[str, np.ndarray], fg: float = 0.62, elsewhere: float = 0.32) -> dict:
    """A CAM per present class: ``fg`` on that class's pixels, ``elsewhere`` on every other pixel.
    Background thresholds in (elsewhere, fg) reproduce the truth exactly; below, background is
    lost; at or above ``fg``, everything becomes background."""
    out = {}
    for image_id, gt in gts.items():
        classes = np.array([c for c in np.unique(gt) if c not in (0, 255)], np.uint8)
        cam = np.stack([np.where(gt == c, fg, elsewhere) for c in classes]).astype(np.float16)
        out[image_id] = {"cam": cam, "classes": classes}
    return out


def test_evaluate_cams_fixed_threshold(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    gts = val_masks(demo_root, cache_dir)
    write_items(tmp_path / "cams.h5", "cams", _cams(gts))
    cfg = data_cfg(demo_root, cache_dir)
    good = ev.run(ev.EvaluateConfig(source=tmp_path / "cams.h5", data=cfg, cam_bg_thresh=0.5)).details
    assert good.metrics.miou == 1.0 and good.protocol["cam_bg_thresh"] == 0.5
    assert good.protocol["cam_bg_thresh_selected_by_sweep"] is False and good.sweep == []
    low = ev.run(ev.EvaluateConfig(source=tmp_path / "cams.h5", data=cfg, cam_bg_thresh=0.15)).details
    assert low.metrics.miou < 1.0
    # background IoU at a low threshold: nothing is predicted background
    assert low.metrics.iou[0] == 0.0


def test_evaluate_cams_sweep_picks_best(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    gts = val_masks(demo_root, cache_dir)
    write_items(tmp_path / "cams.h5", "cams", _cams(gts))
    report = ev.run(
        ev.EvaluateConfig(source=tmp_path / "cams.h5", data=data_cfg(demo_root, cache_dir), sweep=True,
                          json_out=tmp_path / "out" / "eval.json")
    ).details
    thresholds = [t for t, _ in report.sweep]
    assert thresholds == list(ev.SWEEP_THRESHOLDS) and len(thresholds) == 19
    scores = dict(report.sweep)
    assert all(scores[t] == 1.0 for t in (0.35, 0.4, 0.45, 0.5, 0.55, 0.6))
    assert all(scores[t] < 1.0 for t in (0.05, 0.1, 0.3, 0.65, 0.95))
    assert report.protocol["cam_bg_thresh"] == 0.35  # the first of the best
    assert report.protocol["cam_bg_thresh_selected_by_sweep"] is True
    assert report.metrics.miou == max(scores.values()) == 1.0
    data = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert len(data["sweep"]) == 19 and data["sweep"][6] == {"cam_bg_thresh": 0.35, "miou": 1.0}
    assert data["protocol"]["cam_bg_thresh"] == 0.35


def test_sweep_is_ignored_for_label_artifacts(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    gts = val_masks(demo_root, cache_dir)
    write_items(tmp_path / "labels.h5", "labels", {i: {"label": g} for i, g in gts.items()})
    report = ev.run(ev.EvaluateConfig(source=tmp_path / "labels.h5", data=data_cfg(demo_root, cache_dir), sweep=True)).details
    assert report.sweep == [] and "cam_bg_thresh" not in report.protocol
    assert report.metrics.miou == 1.0


def test_evaluate_json_holds_protocol_and_metrics(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    gts = val_masks(demo_root, cache_dir)
    preds = {}
    for image_id, gt in gts.items():
        lab = gt.copy()
        lab[:, :8] = 255
        preds[image_id] = {"label": lab}
    fp = write_items(tmp_path / "pred.h5", "predictions", preds)
    json_path = tmp_path / "report" / "eval.json"
    report = ev.run(ev.EvaluateConfig(source=tmp_path / "pred.h5", data=data_cfg(demo_root, cache_dir), json_out=json_path)).details
    assert not list(json_path.parent.glob("*.partial"))
    data = json.loads(json_path.read_text())
    p = data["protocol"]
    assert p["dataset"] == "demo" and p["split"] == "val" and p["images"] == 6
    assert p["source_fingerprint"] == fp and p["source_kind"] == "predictions"
    assert "(0 of 6 images resized)" in p["resizing"] and p["ignore_label"] == 255
    for key in ("miou", "pixel_acc", "mean_class_acc", "fwiou", "precision", "coverage", "pixels", "per_class_iou"):
        assert key in data, key
    assert set(data["per_class_iou"]) == set(DEMO_CLASSES)
    assert data["coverage"] == pytest.approx(56 / 64) and data["precision"] == 1.0
    assert data["miou"] == pytest.approx(report.metrics.miou, abs=1e-6)
    assert data["pixels"] == 6 * 64 * 64
    assert data["config"]["data"]["dataset"] == "demo" and data["config"]["source"] == str(tmp_path / "pred.h5")
