"""The CPU stages that run in worker processes give what one process gives: saliency maps
with ``--workers``, retrain's labelling with its CRFs in a pool and over the image's own
classes only, and ``retrain --nproc 2`` under torchrun."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stages import retrain, saliency_bg
from stages.core.datasets import DataConfig
from stages.core.cues.crf import CrfConfig, dense_crf
from stages.core.device import resolve_device
from stages.core.io.artifacts import ArtifactReader
from stages.core.io.checkpoint import load_checkpoint
from stages.core.predict.segmenter import load_segmenter_checkpoint, predict_probs
from stages.core.train.fit import OptimConfig, RunConfig
from stages.core.train.segmenter import ModelConfig

REPO = Path(__file__).resolve().parents[1]
TINY_OPTIM = OptimConfig(epochs=1, batch_size=4, crop=64, lr=0.01, warmup_iters=0)


def _read_all(path: Path, key: str) -> dict[str, np.ndarray]:
    with ArtifactReader(path) as r:
        return {i: np.asarray(r.arrays(i)[key]) for i in r.ids}


def test_saliency_workers_write_the_same_maps(tmp_path, train_demo_root):
    data = DataConfig("demo", train_demo_root, "train")
    one = saliency_bg.run(saliency_bg.SaliencyConfig(out=tmp_path / "one.h5", data=data)).path
    two = saliency_bg.run(saliency_bg.SaliencyConfig(out=tmp_path / "two.h5", data=data, workers=2)).path
    a, b = _read_all(one, "saliency"), _read_all(two, "saliency")
    assert list(a) == list(b) and len(a) == 16  # the same ids, in the same order
    assert all(np.array_equal(a[i], b[i]) for i in a)
    with ArtifactReader(one) as r1, ArtifactReader(two) as r2:
        assert r1.fingerprint == r2.fingerprint  # workers say how, not what


def _retrain_cfg(tmp_path, train_data, checkpoint, **kw):
    head = load_checkpoint(checkpoint)["model_config"]["head"]
    return retrain.RetrainConfig(run=RunConfig(out=tmp_path, device="cpu"), data=train_data,
                                 model=ModelConfig("tiny", "none", head=head), optim=TINY_OPTIM,
                                 checkpoint=checkpoint, **kw)


def test_retrain_labels_over_present_classes_equal_the_all_class_crf(tmp_path, train_data, trained_checkpoint):
    """The labelling's CRF runs over background + the image's classes; the earlier way (every
    class, the absent ones zeroed) must give the same argmax on every pixel."""
    weak = train_data.build().weak()
    cfg = _retrain_cfg(tmp_path / "pool", train_data, trained_checkpoint, crf_workers=2)
    labels = _read_all(retrain.make_pseudo_labels(cfg, weak), "label")
    serial = _read_all(retrain.make_pseudo_labels(replace(cfg, run=replace(cfg.run, out=tmp_path / "serial"), crf_workers=0), weak), "label")
    seg = load_segmenter_checkpoint(trained_checkpoint, resolve_device("cpu"))
    differ = 0
    for image_id in weak.ids:
        image = weak.load_image(image_id)
        probs = predict_probs(seg.model, image, cfg.scales, cfg.flip, resolve_device("cpu"), combine=cfg.combine)
        absent = np.ones(len(weak.class_names), bool)
        absent[[0, *weak.labels(image_id)]] = False
        probs[absent] = 0.0
        probs /= probs.sum(axis=0, keepdims=True).clip(min=1e-8)
        every_class = dense_crf(image, probs, CrfConfig()).argmax(axis=0)
        differ += int((every_class != labels[image_id]).sum())
        assert np.array_equal(labels[image_id], serial[image_id])
    assert differ == 0


@pytest.mark.slow
def test_retrain_under_torchrun_labels_once(tmp_path, train_data, trained_checkpoint):
    out = tmp_path / "r"
    head = load_checkpoint(trained_checkpoint)["model_config"]["head"]
    env = {**os.environ, "DGCN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "dgcn_cli", "retrain", "--nproc", "2", "--out", str(out), "--checkpoint", str(trained_checkpoint),
           "--dataset", "demo", "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none",
           "--head", head, "--epochs", "1", "--batch-size", "4", "--crop", "64", "--device", "cpu", "--crf-workers", "1"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    state = load_checkpoint(out / "final.pt")
    assert state["config"]["world_size"] == 2 and state["iteration"] == 2  # 16 images, 2 ranks, batch 4
    with ArtifactReader(out / "pseudo_labels.h5") as r:
        assert len(r.ids) == 16
    assert not list(out.glob(".pseudo_labels_ready.*")) and not list(out.glob("*.partial"))
