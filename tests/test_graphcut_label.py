"""``graphcut-label``: proxy labels from a briefly trained checkpoint, seeds and every expander.

The seeds are constant over 8x8 blocks (the tiny network's stride, see
``conftest.block_seeds``), so resizing them to the 8x8 score map and the
labels back to 64x64 loses nothing and they can be compared pixel for pixel.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stages import graphcut_label
from stages.core.errors import CheckpointError, OutputExistsError
from stages.core.expanders import EXPANDERS
from stages.core.io.artifacts import ArtifactReader
from stages.core.io.checkpoint import load_checkpoint, save_checkpoint
from stages.core.nets import build_classifier, build_segmenter


def _config(checkpoint, seeds, out, data, expander="graphcut", **kw):
    return graphcut_label.GraphcutLabelConfig(checkpoint=checkpoint, seeds=seeds, out=out, data=data,
                                              expander=expander, device="cpu", **kw)


@pytest.fixture(scope="module")
def seeds_by_id(train_seeds):
    with ArtifactReader(train_seeds, kind="seeds") as r:
        return {i: r.label(i) for i in r.ids}


@pytest.mark.parametrize("expander", EXPANDERS.names())
def test_every_expander_labels_every_image(tmp_path, expander, trained_checkpoint, train_seeds, train_data, seeds_by_id):
    out = graphcut_label.run(_config(trained_checkpoint, train_seeds, tmp_path / "labels.h5", train_data, expander)).path
    ds = train_data.build()
    grown = 0
    with ArtifactReader(out, kind="labels", class_names=ds.class_names) as r:
        assert sorted(r.ids) == sorted(ds.ids)
        assert r.extra["expander"] == expander
        with ArtifactReader(train_seeds) as s:
            assert r.inputs["seeds"] == s.fingerprint
        for image_id in ds.ids:
            lab = r.label(image_id)
            seed = seeds_by_id[image_id]
            assert lab.dtype == np.uint8 and lab.shape == ds.load_image(image_id).shape[:2]
            seeded = seed != 255
            if expander != "graphcut":  # the published cut may override seeds where H_c > theta
                np.testing.assert_array_equal(lab[seeded], seed[seeded], err_msg=f"{expander} relabelled seeds of {image_id}")
            allowed = {0, 255, *ds.labels(image_id)}
            assert set(np.unique(lab).tolist()) <= allowed, f"{expander}: a class absent from {image_id}"
            if expander == "none":
                np.testing.assert_array_equal(lab, seed)
            grown += int(((lab != 255) & ~seeded).sum())
    if expander in ("dsrg", "labelprop"):
        assert grown > 0, f"{expander} labelled nothing beyond the seeds"


def test_graphcut_grows_seeds_in_feature_space(tmp_path, trained_checkpoint, train_seeds, train_data, seeds_by_id):
    # A network trained for seconds is rarely sure enough for the paper's theta=0.7;
    # theta=0 (the low end of the paper's ablation) lets the cut alone decide.
    out = graphcut_label.run(_config(trained_checkpoint, train_seeds, tmp_path / "labels.h5", train_data,
                                     expander_options={"theta": 0.0, "k": 5, "override_seeds": False,
                                                       "cut_background": False})).path
    ds = train_data.build()
    grown = 0
    with ArtifactReader(out, kind="labels") as r:
        assert r.extra["expander_config"]["theta"] == 0.0 and r.extra["expander_config"]["k"] == 5
        for image_id in ds.ids:
            lab, seed = r.label(image_id), seeds_by_id[image_id]
            seeded = seed != 255
            np.testing.assert_array_equal(lab[seeded], seed[seeded])
            # background stays its seeds without cut_background
            assert set(np.unique(lab[~seeded]).tolist()) <= {255, *ds.labels(image_id)}
            grown += int(((lab != 255) & ~seeded).sum())
    assert grown > 0


def test_output_exists_and_resume(tmp_path, trained_checkpoint, train_seeds, train_data):
    path = tmp_path / "labels.h5"
    graphcut_label.run(_config(trained_checkpoint, train_seeds, path, train_data, "none"))
    with pytest.raises(OutputExistsError):
        graphcut_label.run(_config(trained_checkpoint, train_seeds, path, train_data, "none"))
    before = path.stat().st_mtime_ns
    assert graphcut_label.run(_config(trained_checkpoint, train_seeds, path, train_data, "none", resume=True)).path == path
    assert path.stat().st_mtime_ns == before


def _with_model(trained_checkpoint, path, model):
    state = load_checkpoint(trained_checkpoint)
    state["model"] = model.state_dict()
    save_checkpoint(path, state)
    return path


def test_checkpoint_of_another_model_names_keys(tmp_path, trained_checkpoint, train_seeds, train_data):
    cases = {
        # another num_classes: the head's shapes differ
        "classes": (build_segmenter("tiny", 3, "none", head="aspp"), ["wrong shape, e.g. head.branches.0.", "is (3,"]),
        # another network altogether (the CAM classifier): keys differ
        "classifier": (build_classifier("tiny", 5, "none"), ["missing", "head.branches.0.", "unexpected", "head.weight"]),
    }
    for name, (model, parts) in cases.items():
        bad = _with_model(trained_checkpoint, tmp_path / f"{name}.pt", model)
        with pytest.raises(CheckpointError) as err:
            graphcut_label.run(_config(bad, train_seeds, tmp_path / f"{name}.h5", train_data))
        msg = str(err.value)
        assert "does not match the model" in msg and str(bad) in msg and "\n" not in msg, msg
        for part in parts:
            assert part in msg, msg
        assert not (tmp_path / f"{name}.h5").exists() and not (tmp_path / f"{name}.h5.partial").exists()


def test_checkpoint_for_other_classes_is_refused(tmp_path, trained_checkpoint, train_seeds, train_data):
    seg = build_segmenter("tiny", 3, "none")
    path = tmp_path / "three.pt"
    save_checkpoint(path, {"model": seg.state_dict(), "model_config": seg.init_args,
                           "config": {"class_names": ["background", "a", "b"]}})
    with pytest.raises(CheckpointError, match="3 classes"):
        graphcut_label.run(_config(path, train_seeds, tmp_path / "x.h5", train_data))


class _Payload:
    pass


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path, trained_checkpoint, train_seeds, train_data):
    state = load_checkpoint(trained_checkpoint)
    state["payload"] = _Payload()
    bad = tmp_path / "pickled.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="refus"):
        graphcut_label.run(_config(bad, train_seeds, tmp_path / "x.h5", train_data))


@pytest.mark.parametrize("expander,options,unary", [
    ("dsrg", {}, "prob"), ("dsrg", {"refine_unary": "neglog"}, "neglog"), ("dsrg", {"refined": False}, None),
    ("graphcut", {}, None), ("labelprop", {}, None), ("none", {}, None),
])
def test_expander_gets_the_crf_it_names(tmp_path, monkeypatch, expander, options, unary, trained_checkpoint,
                                        train_seeds, train_data):
    """dsrg grows on its own CRF (DSRG's U = -p; the boundary loss's with refine_unary=neglog),
    as in training; the others on the network's probabilities, with no CRF run."""
    from dataclasses import replace

    from stages.core.cues.crf import BOUNDARY_CRF

    used = []
    real = graphcut_label.crf_on_batch

    def spy(images, probs, cfg, pool=None):
        used.append(cfg)
        return real(images, probs, cfg, pool)

    monkeypatch.setattr(graphcut_label, "crf_on_batch", spy)
    graphcut_label.run(_config(trained_checkpoint, train_seeds, tmp_path / "labels.h5", train_data, expander,
                               expander_options=options))
    if unary is None:
        assert used == []
    else:
        assert used and set(used) == {replace(BOUNDARY_CRF, unary=unary)}
