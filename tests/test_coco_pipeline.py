"""COCO end to end through the CLI in-process: cam -> saliency-bg -> seeds -> train -> infer ->
evaluate with 81 classes on the tiny COCO-format fixture (train2014 + val2014, 64x48 images),
and the one-line error a malformed annotation file gives."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import pytest
from fixtures_coco import COCO_CATEGORIES, write_coco_fixture
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages.core.io.checkpoint import load_checkpoint
from stages.core.predict.segmenter import load_segmenter_checkpoint

# pycocotools warns on every mask decode under numpy 2 about its own internals.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CLASS_NAMES = ("background", *(name for _, name in COCO_CATEGORIES))
N_TRAIN, N_VAL = 12, 8  # train2014 keeps the 10 labelled images; val2014 keeps all 8
TINY = ["--backbone", "tiny", "--weights", "none", "--crop", "64", "--device", "cpu"]


def invoke(args: list, cache: Path):
    return CliRunner().invoke(app, [str(a) for a in args], env={"DGCN_CACHE": str(cache), "COLUMNS": "200"})


def check(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    """Run the stages once for the module; returns the run folder, data root and outputs."""
    base = tmp_path_factory.mktemp("coco-pipeline")
    root = write_coco_fixture(base / "data", "train2014", n_images=N_TRAIN, seed=0)
    write_coco_fixture(root, "val2014", n_images=N_VAL, seed=1)
    cache, run = base / "cache", base / "run"
    train = ["--dataset", "coco", "--data-root", root, "--split", "train2014"]
    val = ["--dataset", "coco", "--data-root", root, "--split", "val2014"]

    check(invoke(["cam", *train, "--cam-split", "train2014", "--cam-split", "val2014", *TINY,
                  "--epochs", "2", "--batch-size", "4", "--scales", "1", "--out", run], cache))
    check(invoke(["saliency-bg", *train, "--out", run / "saliency_train2014.h5"], cache))
    check(invoke(["seeds", *train, "--cams", run / "cams_train2014.h5", "--saliency", run / "saliency_train2014.h5",
                  "--out", run / "seeds_train2014.h5"], cache))
    check(invoke(["train", *train, "--seeds", run / "seeds_train2014.h5", *TINY, "--boundary-loss", "none",
                  "--epochs", "2", "--batch-size", "2", "--warmup", "2", "--out", run / "train"], cache))
    check(invoke(["infer", *val, "--checkpoint", run / "train" / "final.pt", "--scales", "1", "--no-crf",
                  "--workers", "0", "--device", "cpu", "--out", run / "pred"], cache))
    table = check(invoke(["evaluate", run / "pred" / "pred.h5", *val, "--json", run / "eval_val2014.json"], cache))
    seeds_table = check(invoke(["evaluate", run / "seeds_train2014.h5", *train], cache))
    return {"run": run, "root": root, "table": table, "seeds_table": seeds_table}


@pytest.mark.slow
def test_every_artifact_records_the_81_coco_classes(pipeline):
    run = pipeline["run"]
    expected = {
        "cams_train2014.h5": ("cams", "train2014", 10),
        "cams_val2014.h5": ("cams", "val2014", N_VAL),
        "saliency_train2014.h5": ("saliency", "train2014", 10),
        "seeds_train2014.h5": ("seeds", "train2014", 10),
        "pred/pred.h5": ("predictions", "val2014", N_VAL),
    }
    for name, (kind, split, count) in expected.items():
        with h5py.File(run / name, "r") as f:
            attrs = f.attrs
            assert (attrs["kind"], attrs["dataset"], attrs["split"]) == (kind, "coco", split), name
            assert tuple(json.loads(attrs["class_names"])) == CLASS_NAMES, name
            assert len(f["items"]) == count, name
    seg = load_segmenter_checkpoint(run / "train" / "final.pt")
    assert seg.class_names == CLASS_NAMES and seg.num_classes == 81
    # the classifier scores the 80 foreground classes
    assert load_checkpoint(run / "classifier" / "final.pt")["model_config"]["num_classes"] == 80


@pytest.mark.slow
def test_evaluate_json_has_81_per_class_ious_and_a_finite_miou(pipeline):
    report = json.loads((pipeline["run"] / "eval_val2014.json").read_text())
    per_class = report["per_class_iou"]
    assert len(per_class) == 81
    assert tuple(per_class) == CLASS_NAMES
    assert math.isfinite(report["miou"]) and 0.0 <= report["miou"] <= 1.0
    assert (report["protocol"]["dataset"], report["protocol"]["split"], report["protocol"]["images"]) == ("coco", "val2014", N_VAL)
    # classes absent from both the ground truth and the predictions have no IoU; background always has one
    assert per_class["background"] is not None


@pytest.mark.slow
def test_evaluate_prints_a_per_class_table(pipeline):
    for table in (pipeline["table"], pipeline["seeds_table"]):
        rows = {line.split("│")[1].strip() for line in table.splitlines() if line.count("│") >= 3}
        assert set(CLASS_NAMES) <= rows, table
        assert "mIoU" in rows


def _malformed(root: Path) -> Path:
    ann_file = root / "annotations" / "instances_train2014.json"
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["category_id"] = 12  # not a COCO category id (the ids have gaps)
    ann_file.write_text(json.dumps(data))
    return ann_file


@pytest.mark.parametrize("corrupt", ["unknown category", "invalid JSON"])
def test_malformed_annotation_file_is_a_one_line_error(corrupt, tmp_path):
    root = write_coco_fixture(tmp_path / "data", "train2014", n_images=5)
    if corrupt == "invalid JSON":
        ann_file = root / "annotations" / "instances_train2014.json"
        ann_file.write_text('{"images": [')
        needle = "invalid JSON"
    else:
        ann_file = _malformed(root)
        needle = "unknown category id 12"
    result = invoke(["cam", "--dataset", "coco", "--data-root", root, "--split", "train", *TINY,
                     "--epochs", "1", "--out", tmp_path / "run"], tmp_path / "cache")
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and str(ann_file) in lines[0] and needle in lines[0], lines[0]
    assert "--split train resolved to train2014" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "classifier").exists()
