"""A split without masks (VOC's test split): the stages that need only images work on it, and
``infer --voc-results`` writes what the VOC evaluation server takes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import cam as cam_stage
from stages import infer as infer_stage
from stages import saliency_bg, show
from stages.core.datasets import DataConfig
from stages.core.datasets.voc import VOC_CLASSES
from stages.core.errors import DatasetError, DgcnError
from stages.core.io.artifacts import ArtifactReader
from stages.core.io.checkpoint import save_checkpoint
from stages.core.io.images import voc_palette
from stages.core.nets import build_classifier, build_segmenter
from stages.core.train.fit import RunConfig

TRAIN_IDS = ["train_0000", "train_0001", "train_0002"]
# test ids in VOC's style, images taken from the demo's val split
TEST_IDS = {"2008_000001": "val_0000", "2008_000002": "val_0001", "2009_000003": "val_0002"}
SERVER_DIR = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


@pytest.fixture
def voc_with_test(tmp_path: Path, demo_root: Path) -> Path:
    """VOC2012 layout: train ids with masks; test ids in JPEGImages and test.txt only (their
    masks are absent, as when VOC's test images are unpacked beside trainval's)."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i in TRAIN_IDS:
        (root / "JPEGImages" / f"{i}.jpg").symlink_to(demo_root / "JPEGImages" / f"{i}.jpg")
        (root / "SegmentationClass" / f"{i}.png").symlink_to(demo_root / "SegmentationClass" / f"{i}.png")
    for i, src in TEST_IDS.items():
        (root / "JPEGImages" / f"{i}.jpg").symlink_to(demo_root / "JPEGImages" / f"{src}.jpg")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(TRAIN_IDS) + "\n")
    (root / "ImageSets" / "Segmentation" / "test.txt").write_text("\n".join(TEST_IDS) + "\n")
    return root


def _segmenter_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    seg = build_segmenter("tiny", len(VOC_CLASSES)).eval()
    for conv in seg.head.branches:  # discriminating predictions, so several classes appear
        torch.nn.init.normal_(conv.weight, std=0.5)
    save_checkpoint(path, {"model": seg.state_dict(), "model_config": seg.init_args,
                           "config": {"class_names": list(VOC_CLASSES)}})
    return path


def test_test_split_opens_without_masks_and_labels_are_asked_for_lazily(voc_with_test: Path, cache_dir: Path) -> None:
    ds = DataConfig("voc", voc_with_test, "test").build()
    assert ds.ids == list(TEST_IDS) and not ds.has_masks()
    assert ds.load_image("2008_000001").shape[2] == 3
    with pytest.raises(DatasetError) as err:
        ds.labels("2008_000001")
    msg = str(err.value)
    assert "\n" not in msg and "--labels-file" in msg and "'test'" in msg
    with pytest.raises(DatasetError, match="--labels-file"):
        ds.weak()
    weak = ds.weak(labels=False)  # images only
    assert weak.load_image("2008_000002").ndim == 3
    with pytest.raises(DatasetError, match="images only"):
        weak.labels("2008_000002")
    train = DataConfig("voc", voc_with_test, "train").build()
    assert train.has_masks() and all(isinstance(train.labels(i), tuple) for i in train.ids)


def test_infer_test_split_writes_the_evaluation_server_layout(tmp_path: Path, voc_with_test: Path, cache_dir: Path) -> None:
    ckpt = _segmenter_checkpoint(tmp_path / "seg.pt")
    out, results = tmp_path / "pred", tmp_path / "voc_results"
    r = CliRunner().invoke(app, [
        "infer", "--checkpoint", str(ckpt), "--dataset", "voc", "--data-root", str(voc_with_test), "--split", "test",
        "--out", str(out), "--voc-results", str(results), "--scales", "1", "--no-crf", "--workers", "0",
    ])
    assert r.exit_code == 0, r.output
    assert "evaluation server" in r.output
    server = results / SERVER_DIR
    assert sorted(p.name for p in server.iterdir()) == sorted(f"{i}.png" for i in TEST_IDS)
    seen = set()
    with ArtifactReader(out / "pred.h5", kind="predictions", class_names=VOC_CLASSES) as reader:
        assert (reader.dataset, reader.split) == ("voc", "test")
        for image_id, src in TEST_IDS.items():
            with Image.open(server / f"{image_id}.png") as im:
                assert im.mode == "P" and im.format == "PNG"
                assert np.array_equal(np.asarray(im.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3), voc_palette())
                values = np.asarray(im)
            with Image.open(voc_with_test / "JPEGImages" / f"{image_id}.jpg") as jpg:
                assert values.shape == (jpg.height, jpg.width)
            assert values.max() <= 20  # 0..20: no 255 in what the server scores
            np.testing.assert_array_equal(values, reader.label(image_id))
            np.testing.assert_array_equal(values, np.asarray(Image.open(out / "png" / f"{image_id}.png")))
            seen |= set(np.unique(values).tolist())
    assert len(seen) >= 2


def test_voc_results_added_to_a_finished_run_and_refused_without_a_voc_split(tmp_path: Path, voc_with_test: Path,
                                                                           cache_dir: Path, demo_root: Path) -> None:
    ckpt = _segmenter_checkpoint(tmp_path / "seg.pt")
    data = DataConfig("voc", voc_with_test, "test")
    base = dict(checkpoint=ckpt, out=tmp_path / "pred", data=data, scales=(1.0,), crf=False)
    infer_stage.run(infer_stage.InferConfig(**base))
    # the finished run is kept and nothing is predicted again; the server PNGs come from pred.h5
    summary = infer_stage.run(infer_stage.InferConfig(**base, resume=True, voc_results=tmp_path / "res")).details
    assert summary.done == 0 and summary.skipped == len(TEST_IDS)
    with ArtifactReader(summary.path, kind="predictions") as reader:
        for image_id in TEST_IDS:
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "res" / SERVER_DIR / f"{image_id}.png")),
                                          reader.label(image_id))
    with pytest.raises(DgcnError, match="--dataset voc"):
        infer_stage.InferConfig(checkpoint=ckpt, out=tmp_path / "x", images=tmp_path, voc_results=tmp_path / "r")
    with pytest.raises(DgcnError, match="--dataset voc"):
        infer_stage.InferConfig(checkpoint=ckpt, out=tmp_path / "x", data=DataConfig("demo", demo_root, "val"),
                                voc_results=tmp_path / "r")


def test_saliency_show_and_evaluate_on_the_test_split(tmp_path: Path, voc_with_test: Path, cache_dir: Path) -> None:
    data = DataConfig("voc", voc_with_test, "test")
    sal = saliency_bg.run(saliency_bg.SaliencyConfig(out=tmp_path / "sal.h5", data=data)).path
    with ArtifactReader(sal, kind="saliency") as reader:
        assert reader.ids == sorted(TEST_IDS)
    ckpt = _segmenter_checkpoint(tmp_path / "seg.pt")
    pred = infer_stage.run(infer_stage.InferConfig(checkpoint=ckpt, out=tmp_path / "pred", data=data, scales=(1.0,), crf=False)).details.path
    grid = show.run(show.ShowConfig(out=tmp_path / "show.png", data=data, saliency=sal, pred=pred, n=2)).path
    with Image.open(grid) as im:
        assert im.width > 0
    # no ground-truth column: asked for explicitly, one line
    with pytest.raises(DatasetError, match="no ground-truth masks"):
        show.run(show.ShowConfig(out=tmp_path / "show2.png", data=data, pred=pred, gt=True))

    r = CliRunner().invoke(app, ["evaluate", str(pred), "--dataset", "voc", "--data-root", str(voc_with_test), "--split", "test"])
    assert r.exit_code != 0 and len(_error_lines(r.output)) == 1, r.output
    assert "no ground-truth masks" in r.output and "Traceback" not in r.output


def test_cams_of_a_test_split_need_a_labels_file(tmp_path: Path, voc_with_test: Path, cache_dir: Path) -> None:
    torch.manual_seed(0)
    clf = build_classifier("tiny", len(VOC_CLASSES))
    ckpt = tmp_path / "clf.pt"
    save_checkpoint(ckpt, {"model": clf.state_dict(), "model_config": clf.init_args, "config": {}})
    train = DataConfig("voc", voc_with_test, "train")
    cfg = cam_stage.CamConfig(run=RunConfig(out=tmp_path / "cam", device="cpu"), data=train, checkpoint=ckpt,
                              cam_splits=("test",), scales=(1.0,))
    with pytest.raises(DatasetError) as err:
        cam_stage.run(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "--cam-split test" in msg and "--labels-file" in msg
    assert not (tmp_path / "cam").exists()  # refused before anything is done

    labels = tmp_path / "labels.txt"  # the train ids get their labels from the file too
    labels.write_text("2008_000001 aeroplane\n2008_000002 dog person\n2009_000003 cat\n"
                      + "".join(f"{i} {' '.join(map(str, DataConfig('voc', voc_with_test, 'train').build().labels(i)))}\n"
                                for i in TRAIN_IDS))
    cfg = cam_stage.CamConfig(run=RunConfig(out=tmp_path / "cam", device="cpu"),
                              data=DataConfig("voc", voc_with_test, "train", labels_file=labels), checkpoint=ckpt,
                              cam_splits=("test",), scales=(1.0,))
    (path,) = cam_stage.run(cfg).paths
    with ArtifactReader(path, kind="cams", class_names=VOC_CLASSES) as reader:
        assert reader.split == "test"
        assert reader.cam("2008_000002")[1].tolist() == [12, 15]
