"""The CAM classifier trains in the one training loop: validation (mAP on image labels,
never masks), the weight average, interrupted-run resume and ``--config`` reruns are the
segmenters' own machinery."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import cam
from stages.core.datasets import DataConfig
from stages.core.datasets.voc import VocDataset
from stages.core.io import images
from stages.core.io.artifacts import ArtifactReader
from stages.core.io.checkpoint import checkpoint_kind, load_checkpoint
from stages.core.train import loop as training
from stages.core.train.classifier import ClassifierConfig, average_precision
from stages.core.train.fit import OptimConfig, RunConfig


def test_average_precision_known_answers():
    # ranked: P N P N -> precision 1/1 at the first positive, 2/3 at the second
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool)) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.9]), np.array([1, 1], bool)) == 1.0
    assert average_precision(np.array([0.9, 0.1]), np.array([0, 1], bool)) == 0.5
    assert np.isnan(average_precision(np.array([0.5]), np.array([0], bool)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=30))
def test_average_precision_is_the_mean_precision_at_each_positive(rows):
    scores = np.array([s for s, _ in rows])
    positive = np.array([p for _, p in rows])
    if not positive.any():
        return
    order = np.argsort(-scores, kind="stable")
    # the definition, one positive at a time: hits among the first r ranks / r
    expect = np.mean([positive[order][: r + 1].sum() / (r + 1) for r in range(len(rows)) if positive[order][r]])
    assert average_precision(scores, positive) == pytest.approx(expect)
    # a perfect ranking scores 1
    assert average_precision(positive.astype(float), positive) == 1.0


def _config(tmp_path, train_data, name="cam", **optim):
    return cam.CamConfig(
        run=RunConfig(out=tmp_path / name, device="cpu", val=replace(train_data, split="val")),
        data=train_data, model=ClassifierConfig("tiny", "none"),
        optim=OptimConfig(**{"epochs": 2, "batch_size": 4, "crop": 48, "lr": 0.05, "warmup_iters": 1,
                             "head_lr_mult": 1.0, "ema_decay": 0.5, "scale_range": (0.7, 1.3), **optim}),
        scales=(1.0,),
    )


class _MaskRead(AssertionError):
    pass


def _no_masks(*args, **kwargs):
    raise _MaskRead("the classifier's training or validation read a ground-truth mask")


def test_classifier_validates_keeps_a_weight_average_and_never_reads_masks(tmp_path, train_data, monkeypatch):
    # image-level labels from a file (VOC derives them from the masks by default), for both splits
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i} {' '.join(map(str, ds.labels(i)))}\n"
                              for split in ("train", "val") for ds in [replace(train_data, split=split).build()] for i in ds.ids))
    train_data = replace(train_data, labels_file=labels)
    # from here on, any mask read fails the test
    monkeypatch.setattr(VocDataset, "load_mask", _no_masks)
    monkeypatch.setattr(images, "read_mask", _no_masks)
    monkeypatch.setattr("stages.core.datasets.voc.read_mask", _no_masks)
    (cams,) = cam.run(_config(tmp_path, train_data)).paths
    folder = tmp_path / "cam" / "classifier"
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_map"] for r in records if "val_map" in r]
    assert len(vals) == 2 and all(0.0 <= v <= 1.0 for v in vals)  # one mAP per epoch
    final = load_checkpoint(folder / "final.pt")
    assert checkpoint_kind(final) == "classifier"
    assert (folder / "best.pt").exists() and final["best"] == max(vals)
    # the weight average is what is saved (and what wrote the CAMs); SGD's weights are kept beside it
    assert final["ema_updates"] == 2 * (16 // 4)
    assert any(not torch.equal(final["model"][k], final["train_model"][k]) for k in final["model"]
               if final["model"][k].is_floating_point())
    with ArtifactReader(cams, kind="cams") as r:
        assert len(r) == 16


def test_interrupted_classifier_run_resumes_bit_exact(tmp_path, train_data):
    full = cam.train_classifier(_config(tmp_path, train_data, "full"))
    real, calls = training.apply_lr, [0]

    class Stop(Exception):
        pass

    def stop_at_seventh(optimizer, lr):
        calls[0] += 1
        if calls[0] == 7:  # mid second epoch, after the first epoch's checkpoint and validation
            raise Stop
        real(optimizer, lr)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "apply_lr", stop_at_seventh)
        with pytest.raises(Stop):
            cam.train_classifier(_config(tmp_path, train_data, "cut"))
    assert not (tmp_path / "cut" / "classifier" / "final.pt").exists()
    cut = _config(tmp_path, train_data, "cut")
    resumed = cam.train_classifier(replace(cut, run=replace(cut.run, resume=True)))
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    for part in ("model", "train_model"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_cam_config_rerun_equals_the_original(tmp_path, train_demo_root):
    def invoke(*args):
        res = CliRunner().invoke(app, ["cam", *[str(a) for a in args]])
        assert res.exit_code == 0, res.output

    invoke("--dataset", "demo", "--data-root", train_demo_root, "--out", tmp_path / "a", "--epochs", "1",
           "--batch-size", "4", "--crop", "48", "--lr", "0.05", "--warmup", "10%", "--rescale", "0.8,1.2",
           "--head-lr-mult", "1", "--scales", "1,1.5", "--cam-split", "val", "--seed", "2", "--device", "cpu")
    invoke("--config", tmp_path / "a" / "classifier" / "config.json", "--out", tmp_path / "b")
    ca, cb = (json.loads((tmp_path / x / "classifier" / "config.json").read_text()) for x in "ab")
    assert ca["fingerprint"] == cb["fingerprint"] and cb["optim"]["scale_range"] == [0.8, 1.2]
    assert cb["scales"] == [1.0, 1.5] and cb["cam_splits"] == ["val"] and cb["run"]["seed"] == 2
    wa, wb = (load_checkpoint(tmp_path / x / "classifier" / "final.pt")["model"] for x in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with ArtifactReader(tmp_path / "a" / "cams_val.h5") as ra, ArtifactReader(tmp_path / "b" / "cams_val.h5") as rb:
        assert ra.fingerprint == rb.fingerprint  # the same CAMs, bit for bit


def test_classifier_validation_on_its_own_training_split_is_refused(tmp_path, train_data):
    cfg = _config(tmp_path, train_data)
    with pytest.raises(Exception, match="--val-split train is the training split"):
        cam.run(replace(cfg, run=replace(cfg.run, val=DataConfig(**{**train_data.__dict__}))))
