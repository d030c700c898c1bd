"""``train`` and ``retrain``: pixel masks never reach training, the CLI in-process,
every expander in the loop, and retraining from a checkpoint's pseudo labels."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import retrain, train
from stages.core.datasets import DataConfig
from stages.core.datasets import WeakDataset
from stages.core.datasets.base import SegDataset
from stages.core.datasets.voc import VocDataset
from stages.core.errors import DgcnError
from stages.core.expanders import EXPANDERS
from stages.core.io import images
from stages.core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter
from stages.core.io.checkpoint import load_checkpoint
from stages.core.predict.segmenter import load_segmenter_checkpoint
from stages.core.train import fit as segtrain
from stages.core.train.fit import OptimConfig, RunConfig
from stages.core.train.segmenter import ModelConfig

TINY_OPTIM = OptimConfig(epochs=2, batch_size=4, crop=64, lr=0.01, warmup_iters=2, ckpt_every=2)


def _write_labels_file(ds, path: Path) -> Path:
    path.write_text("".join(f"{i} {' '.join(str(c) for c in ds.labels(i))}\n" for i in ds.ids))
    return path


def _write_labels_artifact(ds, path: Path) -> Path:
    meta = ArtifactMeta(kind="labels", dataset=ds.name, split=ds.split, class_names=ds.class_names)
    with ArtifactWriter(path, meta) as w:
        for image_id in ds.ids:
            w.write(image_id, label=ds.load_mask(image_id))
        return w.finish()


class _MaskRead(AssertionError):
    pass


def _no_masks(*args, **kwargs):
    raise _MaskRead("a training stage read a ground-truth mask")


def _assert_weak_only(train_set) -> None:
    assert isinstance(train_set.weak, WeakDataset)
    assert not hasattr(train_set.weak, "load_mask")
    for name, value in vars(train_set).items():
        assert not isinstance(value, SegDataset), f"the training set holds a full dataset in {name!r}"


def test_pixel_masks_never_reach_training(tmp_path, train_data, train_seeds, make_train_config, monkeypatch):
    ds = train_data.build()
    labels_file = _write_labels_file(ds, tmp_path / "labels.txt")
    labels_h5 = _write_labels_artifact(ds, tmp_path / "labels.h5")
    data = DataConfig(dataset="demo", data_root=train_data.data_root, split="train", labels_file=labels_file)

    # from here on, any mask read fails the test
    monkeypatch.setattr(VocDataset, "load_mask", _no_masks)
    monkeypatch.setattr(images, "read_mask", _no_masks)
    monkeypatch.setattr("stages.core.datasets.voc.read_mask", _no_masks)
    with pytest.raises(_MaskRead):  # the patch bites
        data.build().load_mask(ds.ids[0])

    made = []

    class RecordingSet(segtrain.WeakTrainSet):
        def __init__(self, weak, *args, **kwargs):
            made.append(self)
            super().__init__(weak, *args, **kwargs)

    monkeypatch.setattr(segtrain, "WeakTrainSet", RecordingSet)

    final = train.run(make_train_config(tmp_path / "train", data=data)).path
    assert final.is_file()
    final2 = retrain.run(retrain.RetrainConfig(
        run=RunConfig(out=tmp_path / "retrain", device="cpu"), data=data, model=ModelConfig("tiny", "none"),
        optim=TINY_OPTIM, labels=labels_h5, init="weights",
    )).path
    assert final2.is_file()
    assert len(made) == 2
    for train_set in made:
        _assert_weak_only(train_set)
        assert train_set.weak.image_labels == {i: ds.labels(i) for i in ds.ids}


def test_cli_train_writes_run_folder(tmp_path, train_data, train_seeds, monkeypatch):
    built = []
    real_build = train.build_expander

    def recording_build(name, **options):
        exp = real_build(name, **options)
        built.append(exp)
        return exp

    monkeypatch.setattr(train, "build_expander", recording_build)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--out", str(out), "--seeds", str(train_seeds), "--dataset", "demo",
        "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none",
        "--epochs", "2", "--batch-size", "4", "--crop", "64", "--lr", "0.01", "--warmup", "2",
        "--boundary-loss", "none", "--device", "cpu", "--expander-opt", "k=5",
    ])
    assert result.exit_code == 0, result.output
    assert (out / "final.pt").is_file() and (out / "last.pt").is_file()
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and all("loss" in r and "lr" in r for r in records)
    assert all(np.isfinite(r["loss"]) for r in records)
    assert records[-1]["iteration"] == 8  # 16 images / batch 4 x 2 epochs
    config = json.loads((out / "config.json").read_text())
    assert config["expander"] == "graphcut" and config["expander_options"] == {"k": 5}
    assert config["optim"]["lr"] == 0.01 and config["class_names"][0] == "background"
    assert [e.config.k for e in built if e.name != "none"] == [5]  # "none" serves --expand-after
    seg = load_segmenter_checkpoint(out / "final.pt")
    assert seg.class_names == tuple(config["class_names"]) and seg.model.init_args["backbone"] == "tiny"

    # a second start into the same folder is one line, not a traceback
    again = CliRunner().invoke(app, [
        "train", "--out", str(out), "--seeds", str(train_seeds), "--dataset", "demo",
        "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none",
        "--epochs", "2", "--batch-size", "4", "--crop", "64", "--boundary-loss", "none", "--device", "cpu",
    ])
    assert again.exit_code != 0 and "--resume" in again.output and "Traceback" not in again.output


def test_cli_rejects_bad_expander_option(tmp_path, train_data, train_seeds):
    result = CliRunner().invoke(app, [
        "train", "--out", str(tmp_path / "run"), "--seeds", str(train_seeds), "--dataset", "demo",
        "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none",
        "--device", "cpu", "--expander-opt", "no_such_option=1",
    ])
    assert result.exit_code != 0 and "no_such_option" in result.output
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("expander", [n for n in EXPANDERS.names() if n != "graphcut"])
def test_train_with_every_expander(tmp_path, expander, make_train_config):
    # graphcut is covered by every other training test
    final = train.run(make_train_config(tmp_path / "run", expander=expander, optim={"epochs": 1})).path
    state = load_checkpoint(final)
    assert state["iteration"] == 4 and state["config"]["expander"] == expander
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_train_with_crf_boundary_loss_logs_it(tmp_path, make_train_config):
    out = tmp_path / "run"
    train.run(make_train_config(out, boundary_loss="crf", crf_workers=0, optim={"epochs": 1}))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["boundary_loss"] >= 0 and np.isclose(record["loss"], record["seed_loss"] + record["boundary_loss"], rtol=1e-4)


def test_too_few_images_for_a_batch_is_one_line(tmp_path, make_train_config):
    with pytest.raises(DgcnError, match="--batch-size") as err:
        train.run(make_train_config(tmp_path / "run", optim={"batch_size": 17}))
    assert "\n" not in str(err.value)


def test_retrain_needs_a_source_and_a_start(tmp_path, train_data, trained_checkpoint, train_seeds):
    def cfg(**kw):
        return retrain.RetrainConfig(run=RunConfig(out=tmp_path / "r", device="cpu"), data=train_data,
                                     model=ModelConfig("tiny", "none"), optim=TINY_OPTIM, **kw)

    with pytest.raises(DgcnError, match="--checkpoint .* or --labels"):
        retrain.run(cfg(init="weights"))
    with pytest.raises(DgcnError, match="--init teacher starts from the checkpoint"):
        cfg(labels=train_seeds)  # the default start is the teacher, and there is none
    with pytest.raises(DgcnError, match="only the starting point"):
        retrain.run(cfg(labels=train_seeds, checkpoint=trained_checkpoint, init="weights"))
    with pytest.raises(DgcnError, match="--init must be"):
        cfg(checkpoint=trained_checkpoint, init="imagenet")
    with pytest.raises(DgcnError, match="--combine must be"):
        cfg(checkpoint=trained_checkpoint, combine="max")


def test_retrain_starts_from_the_teachers_weights(tmp_path, train_data, trained_checkpoint):
    """DSRG's second step starts from its stage-one model: the network retrain builds is the
    teacher, weight for weight (its averaged weights where it kept an average)."""
    teacher = load_checkpoint(trained_checkpoint)
    head = teacher["model_config"]["head"]
    cfg = retrain.RetrainConfig(run=RunConfig(out=tmp_path / "r", device="cpu"), data=train_data,
                                model=ModelConfig("tiny", "none", head=head), optim=TINY_OPTIM, checkpoint=trained_checkpoint)
    model, build, fingerprint = retrain.teacher_start(cfg)
    net = build(len(train_data.build().class_names))
    got = net.state_dict()
    assert set(got) == set(teacher["model"])
    assert all(torch.equal(got[k], teacher["model"][k]) for k in got)
    assert model.backbone == teacher["model_config"]["backbone"] and model.weights == "none"
    # from ImageNet/--weights instead: another network
    fresh = ModelConfig("tiny", "none").build(len(train_data.build().class_names)).state_dict()
    assert not all(torch.equal(fresh[k], got[k]) for k in got if k in fresh)
    # a teacher of another architecture is refused, not silently replaced
    with pytest.raises(DgcnError, match="continues the teacher's network"):
        retrain.teacher_start(replace(cfg, model=ModelConfig("resnet50", "none")))
    # the run records where it started: another teacher is another run
    final = retrain.run(cfg).path
    state = load_checkpoint(final)
    assert state["config"]["init"] == "teacher" and state["config"]["init_fingerprint"] == fingerprint
    with ArtifactReader(tmp_path / "r" / "pseudo_labels.h5") as r:
        assert r.extra["combine"] == "logits" and r.extra["flip"] is False  # DSRG's labelling


def test_retrain_from_checkpoint(tmp_path, train_data, trained_checkpoint):
    out = tmp_path / "retrain"
    cfg = retrain.RetrainConfig(
        run=RunConfig(out=out, device="cpu"), data=train_data,
        model=ModelConfig("tiny", "none", head=load_checkpoint(trained_checkpoint)["model_config"]["head"]), optim=TINY_OPTIM,
        checkpoint=trained_checkpoint, scales=(0.75, 1.0, 1.25), flip=True, crf=True,
    )
    final = retrain.run(cfg).path
    assert final == out / "final.pt" and final.is_file()
    ds = train_data.build()
    with ArtifactReader(out / "pseudo_labels.h5", kind="labels", class_names=ds.class_names) as r:
        assert sorted(r.ids) == sorted(ds.ids)
        assert r.extra["crf"] is True and r.extra["scales"] == [0.75, 1.0, 1.25]
        fg_seen = 0
        for image_id in ds.ids:
            lab = r.label(image_id)
            assert lab.shape == ds.load_image(image_id).shape[:2] and lab.dtype == np.uint8
            allowed = {0, *ds.labels(image_id)}
            assert set(np.unique(lab).tolist()) <= allowed, image_id
            fg_seen += int((lab > 0).any())
    assert fg_seen > 0  # the labelling is not all background
    state = load_checkpoint(final)
    with ArtifactReader(out / "pseudo_labels.h5") as r:
        labels_fp = r.fingerprint
    assert state["config"]["stage"] == "retrain" and state["config"]["labels_fingerprint"] == labels_fp
    assert state["iteration"] == 8

    # resuming the finished retrain keeps both the labels and the checkpoint
    before = (out / "pseudo_labels.h5").stat().st_mtime_ns
    assert retrain.run(replace(cfg, run=replace(cfg.run, resume=True))).path == final
    assert (out / "pseudo_labels.h5").stat().st_mtime_ns == before


def test_expand_after_trains_on_the_seeds_alone_until_then(tmp_path, make_train_config):
    from stages import train

    def weights(out, **kw):
        path = train.run(make_train_config(tmp_path / out, **kw)).path
        state = load_checkpoint(path)
        supervised = [json.loads(line)["supervised"] for line in open(path.parent / "metrics.jsonl") if "supervised" in line]
        return state["model"], supervised

    seeds_only, s0 = weights("none", expander="none")
    late, s1 = weights("late", expander="labelprop", expand_after=1000)  # never reached in 8 iterations
    assert all(torch.equal(seeds_only[k], late[k]) for k in seeds_only) and s0 == s1
    early, s2 = weights("early", expander="labelprop", expand_after=4)
    assert not all(torch.equal(seeds_only[k], early[k]) for k in seeds_only)
    assert s2[-1] > s0[-1]  # grown labels after iteration 4 (one record: the last iteration)
