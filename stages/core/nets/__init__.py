"""Networks: stride-8 backbones, the CAM classifier and DeepLab-v2."""
from .backbones import BACKBONES, Backbone, build_backbone
from .classifier import Classifier, build_classifier
from .deeplab import ASPP, DEFAULT_HEAD, HEADS, DeepLabV2, build_segmenter
from .inputs import PAD_RGB, to_tensor
from .weights import load_state_strict, load_weights_file

__all__ = [
    "ASPP",
    "DEFAULT_HEAD",
    "HEADS",
    "BACKBONES",
    "Backbone",
    "Classifier",
    "DeepLabV2",
    "build_backbone",
    "build_classifier",
    "build_segmenter",
    "load_state_strict",
    "load_weights_file",
    "PAD_RGB",
    "to_tensor",
]
