"""Declared artifact schemas and checkpoint kinds: what does not match is refused in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages.core.errors import ArtifactError, CheckpointError
from stages.core.io.artifacts import SCHEMAS, ArtifactMeta, ArtifactReader, ArtifactWriter
from stages.core.io.checkpoint import checkpoint_kind, load_checkpoint, require_kind, save_checkpoint, weights_fingerprint
from stages.core.nets import build_classifier
from stages.core.predict.classifier import load_classifier
from stages.core.predict.segmenter import load_segmenter_checkpoint

CLASSES = ("background", "a", "b")


def _write(tmp_path, kind, **arrays):
    with ArtifactWriter(tmp_path / f"{kind}.h5", ArtifactMeta(kind, "demo", "train", CLASSES)) as w:
        w.write("x", **arrays)
        return w.finish()


U8, F16 = np.uint8, np.float16


@pytest.mark.parametrize("kind,arrays,message", [
    ("saliency", {"bg": np.zeros((4, 4), F16)}, "'bg' is not an array of a 'saliency' artifact (it holds saliency)"),
    ("seeds", {}, "a 'seeds' item needs 'label'"),
    ("seeds", {"label": np.zeros((4, 4), np.int64)}, "'label' must be uint8 (H, W), got int64 (4, 4)"),
    ("labels", {"label": np.zeros((1, 4, 4), U8)}, "'label' must be uint8 (H, W), got uint8 (1, 4, 4)"),
    ("cams", {"cam": np.zeros((2, 4, 4), F16), "classes": np.zeros(3, U8)}, "'classes' has n = 3, other arrays of the item 2"),
    ("predictions", {"label": np.zeros((4, 4), U8), "prob": np.zeros((2, 4, 4), F16)}, "'prob' has C = 2, other arrays of the item 3"),
    ("predictions", {"label": np.zeros((4, 4), U8), "prob": np.zeros((3, 4, 5), F16)}, "'prob' has W = 5, other arrays of the item 4"),
])
def test_writer_refuses_what_the_schema_does_not_allow(tmp_path, kind, arrays, message):
    with pytest.raises(ArtifactError) as err:
        _write(tmp_path, kind, **arrays)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / f"{kind}.h5").exists()


def test_every_kind_round_trips_through_its_typed_accessors(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (4, 5)).astype(U8)
    cam, classes = rng.random((2, 4, 5)).astype(F16), np.array([1, 2], U8)
    sal = rng.random((4, 5)).astype(F16)
    with ArtifactReader(_write(tmp_path, "cams", cam=cam, classes=classes)) as r:
        got_cam, got_classes = r.cam("x", (4, 5))
        np.testing.assert_array_equal(got_cam, cam)
        np.testing.assert_array_equal(got_classes, classes)
        with pytest.raises(ArtifactError, match="'cams' artifact: it holds no 'label'"):
            r.label("x")
        with pytest.raises(ArtifactError, match="4x5|4, 5|size"):
            r.cam("x", (8, 10))
    with ArtifactReader(_write(tmp_path, "saliency", saliency=sal)) as r:
        np.testing.assert_array_equal(r.saliency("x"), sal)
    for kind in ("seeds", "labels", "predictions"):
        with ArtifactReader(_write(tmp_path, kind, label=label)) as r:
            np.testing.assert_array_equal(r.label("x", (4, 5)), label)
    # every kind declares what makes it
    assert {s.made_by for s in SCHEMAS.values()} >= {"dgcn cam", "dgcn infer"}


def test_inspect_prints_the_schema(tmp_path):
    path = _write(tmp_path, "saliency", saliency=np.zeros((4, 4), F16))
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 0 and "saliency: float16 (H, W)" in res.output


def test_checkpoints_record_their_kind(tmp_path, trained_checkpoint):
    state = load_checkpoint(trained_checkpoint)
    assert state["kind"] == "segmenter" and checkpoint_kind(state) == "segmenter"
    with pytest.raises(CheckpointError, match="is a segmenter checkpoint .* needs a classifier checkpoint from `dgcn cam`"):
        load_classifier(trained_checkpoint, torch.device("cpu"))
    # the recorded kind decides, not the architecture's keys
    relabelled = dict(state, kind="classifier")
    save_checkpoint(tmp_path / "c.pt", relabelled)
    with pytest.raises(CheckpointError, match="is a classifier checkpoint .* needs a segmenter"):
        load_segmenter_checkpoint(tmp_path / "c.pt")
    # a checkpoint from before kinds were recorded is told apart by its architecture
    legacy = {k: v for k, v in state.items() if k != "kind"}
    assert checkpoint_kind(legacy) == "segmenter"
    require_kind(legacy, "segmenter", "legacy.pt")
    res = CliRunner().invoke(app, ["inspect", str(trained_checkpoint)])
    assert res.exit_code == 0 and "segmenter" in res.output and "graph_layers" in res.output


def test_weights_fingerprint_follows_values_not_layout(tmp_path):
    torch.manual_seed(0)
    net = build_classifier("tiny", 3)
    plain = {k: v.clone() for k, v in net.state_dict().items()}
    placed = {k: v.clone() for k, v in net.to(memory_format=torch.channels_last).state_dict().items()}
    assert any(not v.is_contiguous() for v in placed.values())  # the conv weights really are channels-last
    assert weights_fingerprint(plain) == weights_fingerprint(placed)
    nudged = dict(plain)
    key = next(k for k, v in plain.items() if v.is_floating_point() and v.numel() > 1)
    nudged[key] = plain[key].clone()
    nudged[key].view(-1)[0] = torch.nextafter(nudged[key].view(-1)[0], torch.tensor(1e9))  # one ulp
    assert weights_fingerprint(nudged) != weights_fingerprint(plain)
    # what `dgcn inspect --brief` prints for a checkpoint is the fingerprint of its weights
    path = tmp_path / "final.pt"
    save_checkpoint(path, {"model": plain, "model_config": net.init_args, "kind": "classifier"})
    res = CliRunner().invoke(app, ["inspect", "--brief", str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.split() == [str(path), "classifier", weights_fingerprint(plain)]
