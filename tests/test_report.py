"""``report``: rows named from the artifacts' own metadata, merged over seeds on request."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import evaluate, graphcut_label, infer, report
from stages.core.errors import DgcnError


def _result(path, kind, miou, model=None, expander=None, split="val"):
    made_by = {"kind": kind}
    if model is not None:
        made_by["model"] = model
    if expander is not None:
        made_by["expander"] = expander
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": {"split": split, "images": 8, "source_kind": kind, "made_by": made_by},
                                "miou": miou, "precision": miou, "coverage": 1.0}))
    return path


def test_rows_from_real_artifacts(tmp_path, trained_checkpoint, train_seeds, train_data):
    val = replace(train_data, split="val")
    pred = infer.run(infer.InferConfig(checkpoint=trained_checkpoint, out=tmp_path / "p", data=val, scales=(1.0,),
                                       crf=False, png=False, device="cpu")).details.path
    labels = graphcut_label.run(graphcut_label.GraphcutLabelConfig(
        checkpoint=trained_checkpoint, seeds=train_seeds, out=tmp_path / "l.h5", data=train_data, expander="none",
        device="cpu")).path
    files = []
    for name, source, data in (("a", pred, val), ("b", labels, train_data), ("c", train_seeds, train_data)):
        files.append(tmp_path / "somewhere" / f"{name}.json")
        evaluate.run(evaluate.EvaluateConfig(source=source, data=data, json_out=files[-1]))
    rows = report.run(report.ReportConfig(files=tuple(files))).details.rows
    # the fixture's run: `train`, the default expander (graphcut), seed 0; file names say nothing
    assert [(r.name, r.kind, r.split) for r in rows] == [
        ("train graphcut s0", "predictions", "val"),
        ("proxy labels: none (network trained with graphcut) s0", "labels", "train"),
        ("seeds", "seeds", "train"),
    ]
    # the object columns are the evaluation's own, and "-" for a result written before them
    pred_eval = json.loads(files[0].read_text())
    assert rows[0].cells()[8:10] == tuple(f"{100 * pred_eval[k]:.1f}" for k in ("object_recall", "object_precision"))
    old = _result(tmp_path / "old" / "eval" / "p.json", "predictions", 0.5, {"stage": "train", "expander": "none"})
    assert report.run(report.ReportConfig(files=(old,))).details.rows[0].cells()[8:10] == ("-", "-")


def test_by_seed_merges_and_clashes_are_told_apart(tmp_path):
    model = {"stage": "train", "expander": "dsrg"}
    a = _result(tmp_path / "x" / "eval" / "p0.json", "predictions", 0.5, {**model, "seed": 0})
    b = _result(tmp_path / "y" / "eval" / "p1.json", "predictions", 0.7, {**model, "seed": 1})
    c = _result(tmp_path / "z" / "eval" / "p1.json", "predictions", 0.6, {**model, "seed": 1})
    rows = report.run(report.ReportConfig(files=(a, b), by_seed=True)).details.rows
    assert len(rows) == 1 and rows[0].name == "train dsrg" and rows[0].cells()[4:6] == ("2", "60.0 ± 14.1")
    separate = report.run(report.ReportConfig(files=(a, b))).details.rows
    assert [r.name for r in separate] == ["train dsrg s0", "train dsrg s1"]
    # the same seed twice is not a mean over seeds: each keeps its own row, told apart by path
    clash = report.run(report.ReportConfig(files=(a, b, c), by_seed=True)).details.rows
    assert [r.name for r in clash] == ["train dsrg [x/p0]", "train dsrg [y/p1]", "train dsrg [z/p1]"]


def test_retrain_pseudo_labels_and_old_results(tmp_path):
    teacher = {"stage": "train", "expander": "graphcut", "seed": 2}
    r = _result(tmp_path / "r.json", "predictions", 0.6, {"stage": "retrain", "seed": 1, "teacher": teacher})
    p = _result(tmp_path / "pl.json", "labels", 0.5, teacher, split="train")
    cams = _result(tmp_path / "c.json", "cams", 0.4)
    old = tmp_path / "run-s3" / "eval" / "pred_val.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"protocol": {"split": "val", "source_kind": "predictions"}, "miou": 0.1}))
    names = [row.name for row in report.run(report.ReportConfig(files=(r, p, cams, old))).details.rows]
    assert names == ["retrain from train graphcut s1", "pseudo labels of train graphcut s2", "CAMs", "run-s3/pred_val"]


def test_out_file_and_cli(tmp_path):
    a = _result(tmp_path / "a.json", "predictions", 0.5, {"stage": "train", "expander": "none", "seed": 0})
    out = tmp_path / "t" / "report.txt"
    result = report.run(report.ReportConfig(files=(a,), out=out))
    assert result.paths == (out,) and result.summary == f"wrote {out}"
    assert "train none s0" in out.read_text() and "50.0" in out.read_text()
    assert [row.name for row in result.details.rows] == ["train none s0"]
    res = CliRunner().invoke(app, ["report", str(a), "--out", str(tmp_path / "cli.txt")])
    assert res.exit_code == 0, res.output
    assert "train none s0" in (tmp_path / "cli.txt").read_text()


def test_not_a_result(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DgcnError, match="not a result of `dgcn evaluate --json`"):
        report.run(report.ReportConfig(files=(bad,)))
    with pytest.raises(DgcnError, match="at least one"):
        report.ReportConfig(files=())


def test_expander_options_are_part_of_the_name(tmp_path):
    fg = {"stage": "train", "expander": "graphcut", "expander_options": {"cut_background": False}, "seed": 0}
    a = _result(tmp_path / "a.json", "predictions", 0.5, fg)
    b = _result(tmp_path / "b.json", "labels", 0.5, fg, expander="graphcut", split="train")
    json_b = json.loads(b.read_text())
    json_b["protocol"]["made_by"]["expander_options"] = {"cut_background": False}
    b.write_text(json.dumps(json_b))
    names = [r.name for r in report.run(report.ReportConfig(files=(a, b))).details.rows]
    assert names == ["train graphcut (cut_background=false) s0", "proxy labels: graphcut (cut_background=false) s0"]


def test_results_from_different_environments_are_warned_about(tmp_path):
    a = _result(tmp_path / "a.json", "seeds", 0.5)
    b = _result(tmp_path / "b.json", "seeds", 0.6, split="train")
    old = _result(tmp_path / "old.json", "seeds", 0.6, split="trainval")  # made before environments were recorded
    for path, torch_version in ((a, "2.5.1"), (b, "2.14.1")):
        data = json.loads(path.read_text())
        data["source_environment"] = {"dgcn": "0.1.0", "python": "3.11.7", "torch": torch_version, "device": "cpu"}
        path.write_text(json.dumps(data))
    result = report.run(report.ReportConfig(files=(a, b, old)))
    assert len(result.warnings) == 1 and "2 environments" in result.warnings[0]
    assert "torch 2.5.1" in result.warnings[0] and "torch 2.14.1" in result.warnings[0]
    assert report.run(report.ReportConfig(files=(a, old))).warnings == ()
    # the same commit with and without uncommitted changes: the flag alone tells nothing
    for path, dirty in ((a, False), (b, True)):
        data = json.loads(path.read_text())
        data["source_environment"] = {"dgcn": "0.1.0", "git_commit": "abc", "git_dirty": dirty, "torch": "2.5.1"}
        path.write_text(json.dumps(data))
    assert report.run(report.ReportConfig(files=(a, b))).warnings == ()
    # one GPU machine: CPU-only steps (saliency, seeds) record the CPU, network steps the GPU
    for path, device in ((a, "Intel(R) Xeon(R)"), (b, "NVIDIA H100 80GB HBM3")):
        data = json.loads(path.read_text())
        data["source_environment"] = {"dgcn": "0.1.0", "git_commit": "abc", "torch": "2.5.1", "device": device}
        path.write_text(json.dumps(data))
    assert report.run(report.ReportConfig(files=(a, b))).warnings == ()


def test_per_class_table_means_over_seeds_and_skips_unscored_classes(tmp_path):
    files = []
    for seed, (cow, sheep) in enumerate([(0.5, 0.2), (0.7, None)]):
        path = _result(tmp_path / f"s{seed}.json", "predictions", 0.5, {"stage": "train", "expander": "graphcut", "seed": seed})
        data = json.loads(path.read_text())
        data["per_class_iou"] = {"background": 0.9, "cow": cow, "sheep": sheep, "horse": None}
        path.write_text(json.dumps(data))
        files.append(path)
    result = report.run(report.ReportConfig(files=tuple(files), by_seed=True, per_class=True, out=tmp_path / "r.txt"))
    rep = result.details
    assert rep.class_names() == ["background", "cow", "sheep"]  # horse: scored nowhere
    text = (tmp_path / "r.txt").read_text()
    assert "per-class IoU (%), mean over seeds" in text
    line = next(ln for ln in text.splitlines() if "train graphcut" in ln and "val" in ln and "90.0" in ln)
    assert "60.0" in line and "20.0" in line  # cow: mean of 50 and 70; sheep: the one scored run
    res = CliRunner().invoke(app, ["report", "--by-seed", "--per-class", *map(str, files)])
    assert res.exit_code == 0 and "per-class IoU" in res.output


def test_a_fresh_start_retraining_is_named_apart_from_the_default(tmp_path):
    teacher = {"stage": "train", "expander": "graphcut", "seed": 0}
    a = _result(tmp_path / "a.json", "predictions", 0.5, {"stage": "retrain", "seed": 0, "teacher": teacher, "init": "teacher"})
    b = _result(tmp_path / "b.json", "predictions", 0.4, {"stage": "retrain", "seed": 0, "teacher": teacher, "init": "weights"})
    names = [r.name for r in report.run(report.ReportConfig(files=(a, b))).details.rows]
    assert names == ["retrain from train graphcut s0", "retrain (fresh start) from train graphcut s0"]


def test_rows_told_apart_by_file_keep_their_bracketed_names(tmp_path):
    a = _result(tmp_path / "x" / "p1.json", "seeds", 0.5)
    b = _result(tmp_path / "y" / "p2.json", "seeds", 0.6)
    report.run(report.ReportConfig(files=(a, b), out=tmp_path / "r.txt"))
    text = (tmp_path / "r.txt").read_text()
    assert "seeds [p1]" in text and "seeds [p2]" in text  # not swallowed as rich markup
