"""What training a segmentation network adds to the loop: the network (DeepLab-v2 on a
stride-8 backbone), label maps read from an artifact, and validation mIoU."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .. import options
from ..datasets import DataConfig
from ..eval.metrics import ConfusionMatrix
from ..io.artifacts import ArtifactReader
from ..maps import resize_scores
from ..nets import BACKBONES, DEFAULT_HEAD, HEADS, DeepLabV2, build_segmenter
from ..nets.inputs import to_tensor
from ..options import opt
from .fit import LabelMapsFn, LossFn, Task


@dataclass(frozen=True)
class ModelConfig:
    """The segmentation network. ``head``: ``largefov`` (the published code's single
    3x3 conv at dilation 12) or ``aspp``. ``freeze_bn``: keep the backbone's BatchNorm
    scale/shift fixed, as the published code does; None means yes for pretrained
    weights and no for a backbone trained from scratch (whose BatchNorm starts at 1/0)."""

    backbone: str = opt("resnet101", "Backbone: {choices} (paper: resnet101).", choices=lambda: BACKBONES.names())
    weights: str = opt("imagenet", "Backbone initialisation: imagenet, none, or a weights file.")
    graph_layers: Optional[tuple[str, ...]] = opt(None, "Comma-separated backbone layers for the graph-cut node features "
                                                        "(default: the backbone's).", parse=options.names,
                                                  show=lambda v: ",".join(v or ()))
    head: str = opt(DEFAULT_HEAD, "Segmentation head: {choices} (largefov: one 3x3 conv at dilation 12, the published "
                                  "code's; aspp: DeepLab-v2's rates 6/12/18/24).", choices=lambda: HEADS)
    freeze_bn: Optional[bool] = opt(None, "Keep the backbone's BatchNorm scale/shift fixed (the published code). Default: "
                                          "frozen for pretrained weights, trained for --weights none.", negative="--train-bn")

    @property
    def bn_frozen(self) -> bool:
        return self.weights != "none" if self.freeze_bn is None else bool(self.freeze_bn)

    def build(self, num_classes: int) -> DeepLabV2:
        return build_segmenter(self.backbone, num_classes, self.weights, self.graph_layers,
                               head=self.head, freeze_bn=self.bn_frozen)


@torch.no_grad()
def validate(model: DeepLabV2, data: DataConfig, device: torch.device, shard: tuple[int, int] = (0, 1)) -> float:
    """Single-scale val mIoU (no flip, no CRF): a training monitor, not the paper's protocol.

    Under DDP every rank scores its own share of the images and the confusion
    matrices are summed, so no rank idles in a collective while one validates alone.
    """
    ds = data.build()
    rank, world = shard
    mat = ConfusionMatrix(ds.num_classes)
    model.eval()
    for image_id in ds.ids[rank::world]:
        image = ds.load_image(image_id)
        x = to_tensor(image)[None].to(device)
        logits = model(x).float()
        logits = resize_scores(logits, image.shape[:2])
        mat.update(ds.load_mask(image_id), logits.argmax(1)[0].cpu().numpy().astype(np.uint8))
    if world > 1:
        total = torch.from_numpy(mat.mat).to(device)
        dist.all_reduce(total)
        mat.mat = total.cpu().numpy()
    return mat.results(ds.class_names).miou


def segmenter_task(model: ModelConfig, loss: LossFn, label_maps: LabelMapsFn, keep_image: bool = False) -> Task:
    return Task(kind="segmenter", build=model.build, loss=loss, label_maps=label_maps, keep_image=keep_image,
                validate=validate, val_name="val_miou")


class LazyLabelMaps:
    """Per-image label maps read from an artifact, opened lazily in each process
    (an open HDF5 handle must not cross into loader workers)."""

    def __init__(self, path: Path, kinds: Sequence[str], class_names: Sequence[str], ids: Sequence[str]) -> None:
        self.path, self.kinds, self.class_names = Path(path), tuple(kinds), tuple(class_names)
        with ArtifactReader(self.path, kind=self.kinds, class_names=self.class_names) as r:
            r.require_ids(ids)
            self.fingerprint = r.fingerprint
            # the network that made these labels, if one did (see ``predict.segmenter.run_provenance``)
            made_by = r.extra.get("model")
            self.made_by = dict(made_by) if isinstance(made_by, dict) else {}
        self._reader = None

    def __call__(self, image_id: str, image_size: Sequence[int]) -> list[np.ndarray]:
        if self._reader is None:
            self._reader = ArtifactReader(self.path, kind=self.kinds, class_names=self.class_names)
        return [self._reader.label(image_id, image_size)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}
