"""``--repeat-enclosed-params``: hustvl/DGCN's optimiser, in which each backbone parameter is
stepped once per module enclosing it, against torch's SGD given the published duplicated list
(``get_1x_lr_params_NOscale``, transcribed below); its counts on ResNet-101; its state through
a checkpoint and an interrupted, resumed run."""
from __future__ import annotations

import copy
import warnings
from collections import Counter

import pytest
import torch
from test_resume import _assert_same_state, _stop_at
from torch import nn
from torchvision.models.resnet import Bottleneck

from stages import train
from stages.core.io.checkpoint import load_checkpoint
from stages.core.nets import build_classifier, build_segmenter
from stages.core.nets.backbones import Backbone
from stages.core.nets.deeplab import DeepLabV2, freeze_batchnorm_affine
from stages.core.train.fit import OptimConfig, make_optimizer
from stages.core.train.loop import apply_lr
from stages.core.train.repeated_sgd import RepeatedSGD, enclosing_counts

LR = 0.01


# ---------------------------------------------------------------- the published code, transcribed
# hustvl/DGCN train.py; ``model.module`` (DDP) is our DeepLab's backbone trunk and head


def get_1x_lr_params_NOscale(trunk):
    b = [trunk.conv1, trunk.bn1, trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]
    for i in range(len(b)):
        for j in b[i].modules():
            for k in j.parameters():
                if k.requires_grad:
                    yield k


def get_10x_lr_params(model):
    yield from model.head.parameters()  # the published layer5: the LargeFOV classifier module


def published_optimizer(model, lr):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "optimizer contains a parameter group with duplicate parameters")
        return torch.optim.SGD([{"params": get_1x_lr_params_NOscale(model.backbone.trunk), "lr": lr},
                                {"params": get_10x_lr_params(model), "lr": 10 * lr}],
                               lr=lr, momentum=0.9, weight_decay=5e-4, foreach=False)


# ---------------------------------------------------------------- tests


def test_resnet101_walk_lists_314_entries_for_104_parameters():
    model = build_segmenter("resnet101", 21, "none", freeze_bn=True)  # BatchNorm frozen, as published
    counts = enclosing_counts(model.backbone.trunk)
    assert len(counts) == 104 and sum(counts.values()) == 314
    # the stem conv once; 99 bottleneck convs (layer, block, conv); 4 downsample convs (+ downsample)
    assert Counter(counts.values()) == {1: 1, 3: 99, 4: 4}
    listed = Counter(id(p) for p in get_1x_lr_params_NOscale(model.backbone.trunk))
    assert dict(listed) == counts


def test_other_backbones_get_the_same_walk_over_their_top_level_modules():
    model = build_segmenter("tiny", 3, "none")  # BatchNorm trained: its parameters counted too
    counts = enclosing_counts(model.backbone.trunk)
    # tiny's trunk is stage1..3, each a Sequential of conv/bn: two enclosing modules for each
    assert set(counts.values()) == {2} and len(counts) == sum(p.requires_grad for p in model.backbone.parameters())
    opt = make_optimizer(build_classifier("tiny", 3), OptimConfig(repeat_enclosed_params=True))  # cam's path
    assert isinstance(opt, RepeatedSGD) and [g["repeats"] for g in opt.param_groups] == [2, 1]


class SmallResNet(Backbone):
    """torchvision's ResNet layout (conv1, bn1, layer1-4 of Bottleneck blocks, a downsample in each
    layer's first block) at a few channels: the published walk's multiplicities 1, 3 and 4, fast."""

    name = "small_resnet"

    def __init__(self) -> None:
        super().__init__({"layer1": 16, "layer2": 16, "layer3": 16, "layer4": 16}, ("layer1", "layer3"))
        t = nn.Module()
        t.conv1, t.bn1 = nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(16)
        t.relu, t.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)
        for i, blocks in enumerate((2, 2, 2, 1), start=1):
            down = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
            setattr(t, f"layer{i}", nn.Sequential(Bottleneck(16, 4, downsample=down),
                                                  *(Bottleneck(16, 4) for _ in range(blocks - 1))))
        self.trunk = t

    def _stages(self, x):
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(t, name)(x)
            yield name, x


def small_resnet_deeplab(freeze_bn: bool) -> DeepLabV2:
    model = DeepLabV2(SmallResNet(), 4)
    if freeze_bn:
        freeze_batchnorm_affine(model.backbone)
    return model


def _random_grads(model, gen):
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen) if p.requires_grad else None


def _copy_grads(src, dst):
    for p, q in zip(src.parameters(), dst.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()


def _buffers(model, opt):
    return {n: opt.state[p]["momentum_buffer"] for n, p in model.named_parameters() if p in opt.state}


@pytest.mark.parametrize("freeze_bn", [True, False], ids=["bn-frozen", "bn-trained"])
def test_steps_equal_torch_sgd_on_the_published_duplicated_list(freeze_bn):
    torch.manual_seed(0)
    ours_model = small_resnet_deeplab(freeze_bn)
    if freeze_bn:
        assert Counter(enclosing_counts(ours_model.backbone.trunk).values()) == {1: 1, 3: 21, 4: 4}
    ref_model, start = copy.deepcopy(ours_model), copy.deepcopy(ours_model)
    ours = make_optimizer(ours_model, OptimConfig(lr=LR, repeat_enclosed_params=True))
    ref = published_optimizer(ref_model, LR)
    plain_model = copy.deepcopy(ours_model)
    plain = make_optimizer(plain_model, OptimConfig(lr=LR))
    gen = torch.Generator().manual_seed(1)
    for step, lr in enumerate((LR, LR, 0.5 * LR, 0.3 * LR)):  # the first step (no momentum yet) and later ones
        _random_grads(ours_model, gen)
        _copy_grads(ours_model, ref_model)
        _copy_grads(ours_model, plain_model)
        apply_lr(ours, lr)
        apply_lr(plain, lr)
        ref.param_groups[0]["lr"], ref.param_groups[1]["lr"] = lr, 10 * lr  # the published adjust_learning_rate
        ours.step()
        ref.step()
        plain.step()
        for (name, a), b in zip(ours_model.named_parameters(), ref_model.parameters()):
            assert torch.allclose(a, b, rtol=0, atol=1e-6), f"step {step}: {name} differs by {(a - b).abs().max()}"
        mine, theirs = _buffers(ours_model, ours), _buffers(ref_model, ref)
        assert mine.keys() == theirs.keys() and len(mine) == sum(p.requires_grad for p in ours_model.parameters())
        for name in mine:
            assert torch.allclose(mine[name], theirs[name], rtol=0, atol=1e-6), f"step {step}: buffer of {name} differs"
    # the repetition matters: a bottleneck conv (3 listings) moves several times as far as with
    # plain SGD; the head, listed once, moves the same
    w, head = "backbone.trunk.layer2.1.conv2.weight", "head.branches.0.weight"
    mine, once, init = (dict(m.named_parameters()) for m in (ours_model, plain_model, start))
    assert (mine[w] - init[w]).norm() > 2.5 * (once[w] - init[w]).norm()
    assert torch.allclose(mine[head], once[head], rtol=0, atol=1e-7)


def test_state_dict_round_trips():
    torch.manual_seed(0)
    model = build_segmenter("tiny", 3, "none")
    opt = make_optimizer(model, OptimConfig(lr=LR, repeat_enclosed_params=True))
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        _random_grads(model, gen)
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert [g["repeats"] for g in saved["param_groups"]] == [2, 1]
    twin = copy.deepcopy(model)
    again = make_optimizer(twin, OptimConfig(lr=LR, repeat_enclosed_params=True))
    again.load_state_dict(saved)
    _random_grads(model, gen)
    _copy_grads(model, twin)
    opt.step()
    again.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert all(torch.equal(opt.state[p]["momentum_buffer"], again.state[q]["momentum_buffer"])
               for p, q in zip(model.parameters(), twin.parameters()))


def test_interrupted_run_resumes_bit_exact(tmp_path, make_train_config):
    from stages.core.train import loop as training

    optim = {"repeat_enclosed_params": True}
    full = train.run(make_train_config(tmp_path / "full", optim=optim)).path
    hook, stop = _stop_at(8)  # after last.pt at iteration 6, mid-epoch 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "apply_lr", hook)
        with pytest.raises(stop):
            train.run(make_train_config(tmp_path / "cut", optim=optim))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["iteration"] == 6
    resumed = train.run(make_train_config(tmp_path / "cut", optim=optim, resume=True)).path
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    _assert_same_state(a, b)
    assert [g["repeats"] for g in a["optimizer"]["param_groups"]] == [2, 1]
    # another run than the default one: its fingerprint says so, and --resume without the option refuses it
    plain = make_train_config(tmp_path / "cut", resume=True)
    with pytest.raises(Exception, match="another configuration"):
        train.run(plain)
