"""`make voc` end to end, so the paper's pipeline cannot rot unnoticed.

A tiny VOC 2012 + SBD is built *as archives* (VOC-style tar, SBD-style tgz with ``.mat``
masks; photos from horse-voc), ``dgcn prepare voc`` unpacks them, then the real ``make voc``
chain runs with only size and schedule variables overridden (tiny backbone from scratch,
1 epoch, small crops, CPU): once with our seeds (cam + saliency) and once with ``SEEDS=`` a
DSRG-format pickle and its ``input_list.txt``. Each must reach ``report.txt`` with every row
the pipeline promises. Quality is not asserted: one epoch of a tiny network measures nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_dsrg import write_dsrg_cues
from fixtures_voc_archives import HORSE_VOC, build_voc_archives
from stages import prepare
from stages.core.datasets import DataConfig

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix) if (Path(sys.prefix) / "bin" / "dgcn").exists() else None  # the venv running the tests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HORSE_VOC.is_dir(), reason="needs ../shared/data/horse-voc"),
    pytest.mark.skipif(VENV is None, reason="needs the dgcn command beside this Python (make install)"),
]

# size and schedule only: the method's options stay paper.mk's own
SMALL = [
    "DEVICE=cpu", "PAPER_WORKERS=0",
    "PAPER_CAM_BACKBONE=tiny", "PAPER_CAM_WEIGHTS=none", "PAPER_CAM_SCHEDULE=--epochs 1 --batch-size 4 --crop 96",
    "VOC_SEG_BACKBONE=tiny", "PAPER_SEG_WEIGHTS=none", "PAPER_SCHEDULE=--epochs 1 --batch-size 4 --crop 96 --warmup 0",
    "PAPER_RETRAIN_SCHEDULE=--epochs 1 --batch-size 4 --crop 96",
]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("voc")
    built = build_voc_archives(base / "archives", n_voc_train=8, n_voc_val=6, n_sbd=12)
    root = base / "data"
    result = prepare.run(prepare.PrepareConfig(dataset="voc", root=root, archives=base / "archives", verify=False))
    voc = root / "VOCdevkit" / "VOC2012"
    assert sorted((voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()) == built["expected"]["train_aug"]
    assert result.paths
    return voc


def make_voc(voc: Path, out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DGCN_CACHE": str(cache)}
    cmd = ["make", "-C", str(REPO), "--no-print-directory", "-o", f"{VENV}/.installed", "voc",
           f"VENV={VENV}", f"VOC_ROOT={voc}", f"VOC_OUT={out}", *SMALL, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def report_rows(out: Path) -> dict[str, dict]:
    """Each evaluation behind the report, by file name."""
    return {p.name: json.loads(p.read_text()) for p in out.glob("eval_*.json")}


def check_report(out: Path, proc: subprocess.CompletedProcess, with_cams: bool) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (out / "report.txt").read_text()
    rows = report_rows(out)
    expected = {"eval_seeds_train.json", "eval_labels_train.json", "eval_pseudo_train.json",
                "eval_val.json", "eval_retrain_val.json"} | ({"eval_cams_train.json"} if with_cams else set())
    assert set(rows) == expected
    # pseudo-label rows are on VOC train (its own masks), final rows on val
    for name, row in rows.items():
        split = row["protocol"]["split"]
        assert split == ("val" if name.endswith("_val.json") else "train"), name
    assert rows["eval_seeds_train.json"]["protocol"]["images"] == 8
    assert rows["eval_val.json"]["protocol"]["images"] == 6
    assert report.count("\n") >= len(expected)
    assert report in proc.stdout  # make voc ends by printing the table


def test_make_voc_with_our_seeds(voc_root, tmp_path):
    out = tmp_path / "runs"
    proc = make_voc(voc_root, out, tmp_path / "cache")
    check_report(out, proc, with_cams=True)
    # a rerun redoes nothing: every step is a file target
    again = make_voc(voc_root, out, tmp_path / "cache")
    ran = [ln for ln in again.stdout.splitlines() if ln.startswith(f"{VENV}/bin/dgcn")]
    assert again.returncode == 0 and not ran, again.stdout[-2000:]


def test_make_voc_with_dsrg_cues(voc_root, tmp_path):
    ds = DataConfig(dataset="voc", data_root=voc_root, split="train_aug", cache_dir=tmp_path / "cache").build()
    pickle_path, list_path = tmp_path / "localization_cues-sal.pickle", tmp_path / "input_list.txt"
    write_dsrg_cues(pickle_path, list_path, ds.ids, labels={i: ds.labels(i) for i in ds.ids})
    out = tmp_path / "runs"
    proc = make_voc(voc_root, out, tmp_path / "cache", f"SEEDS={pickle_path}", f"SEEDS_LIST={list_path}")
    check_report(out, proc, with_cams=False)
    assert not (out / "cams_train_aug.h5").exists()  # the imported cues replace cam + saliency
