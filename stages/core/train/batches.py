"""Torch datasets for training: images, image-level labels and (for segmentation) label maps.

Augmentation randomness is a pure function of (seed, epoch, image index), so
data order and crops are the same whether a run was interrupted or not, and
whatever the number of loader workers. Sampled indices carry the epoch
(``epoch * n + i``) so workers need no shared mutable state.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..datasets import WeakDataset
from ..io.images import resize_image, resize_label
from ..maps import IGNORE
from ..nets.inputs import PAD_RGB, to_tensor


def scale_crop_flip(
    rng: np.random.Generator,
    image: np.ndarray,
    labels: Sequence[np.ndarray],
    crop: int,
    scale_range: tuple[float, float],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random rescale, random crop (padded when smaller) and horizontal flip, applied jointly.

    ``scale_range`` (1, 1) crops the image as it is (no resampling at all), as the
    published DGCN code trains; the scale is still drawn so the crop positions of a
    run do not depend on whether rescaling is on.
    """
    h, w = image.shape[:2]
    s = rng.uniform(*scale_range)
    nh, nw = max(8, int(round(h * s))), max(8, int(round(w * s)))
    if (nh, nw) != (h, w):
        image = resize_image(image, (nh, nw))
        labels = [resize_label(lab, (nh, nw)) for lab in labels]
    ph, pw = max(crop, nh), max(crop, nw)
    canvas = np.empty((ph, pw, 3), dtype=np.uint8)
    canvas[:] = PAD_RGB
    canvas[:nh, :nw] = image
    lab_canvas = []
    for lab in labels:
        c = np.full((ph, pw), IGNORE, dtype=np.uint8)
        c[:nh, :nw] = lab
        lab_canvas.append(c)
    y0 = int(rng.integers(0, ph - crop + 1))
    x0 = int(rng.integers(0, pw - crop + 1))
    image = canvas[y0 : y0 + crop, x0 : x0 + crop]
    labels = [c[y0 : y0 + crop, x0 : x0 + crop] for c in lab_canvas]
    if rng.random() < 0.5:
        image = image[:, ::-1]
        labels = [c[:, ::-1] for c in labels]
    return np.ascontiguousarray(image), [np.ascontiguousarray(c) for c in labels]


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, starting at ``start`` (to resume mid-epoch)."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True, shard: tuple[int, int] = (0, 1)) -> None:
        self.n, self.seed, self.epoch, self.start, self.shuffle = n, seed, epoch, start, shuffle
        self.rank, self.world = shard

    def _order(self) -> list[int]:
        if not self.shuffle:
            order = list(range(self.n))
        else:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        # each rank takes every world-th sample, so shards never overlap
        return order[self.rank :: self.world]

    def __iter__(self):
        return iter(self.epoch * self.n + i for i in self._order()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self._order()) - self.start)


def epoch_loader(
    dataset: Dataset, *, batch_size: int, seed: int, epoch: int, start_batch: int = 0,
    workers: int = 0, shard: tuple[int, int] = (0, 1),
) -> DataLoader:
    """The batches of one epoch from batch ``start_batch`` on (to resume mid-epoch), in an
    order that depends only on (seed, epoch) and, under DDP, on this process's shard."""
    sampler = EpochSampler(len(dataset), seed, epoch, start_batch * batch_size, shard=shard)
    # its own generator: a loader drawing its base seed from the global RNG would shift
    # that stream on every (re)start, so a resumed run would diverge from the original
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=True, generator=gen)


class WeakTrainSet(Dataset):
    """Image + image-level label vector (+ optional label maps, e.g. seeds), augmented.

    ``label_maps`` maps (image id, image size) to one or more uint8 maps at that size
    that are cropped together with the image; for the classifier there are none.
    """

    def __init__(
        self,
        weak: WeakDataset,
        crop: int,
        seed: int,
        scale_range: tuple[float, float] = (1.0, 1.0),
        label_maps: Optional[Callable[[str, tuple[int, int]], list[np.ndarray]]] = None,
        keep_image: bool = False,
    ) -> None:
        self.weak, self.crop, self.seed, self.scale_range = weak, crop, seed, scale_range
        self.label_maps = label_maps
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.weak)

    def __getitem__(self, encoded: int) -> dict:
        epoch, index = divmod(int(encoded), len(self.weak))
        image_id = self.weak.ids[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        image = self.weak.load_image(image_id)
        maps = []
        if self.label_maps is not None:
            maps = self.label_maps(image_id, image.shape[:2])
        image, maps = scale_crop_flip(rng, image, maps, self.crop, self.scale_range)
        item = {"image": to_tensor(image), "labels": torch.from_numpy(self.weak.label_vector(image_id)), "index": index}
        for k, m in enumerate(maps):
            item[f"map{k}"] = torch.from_numpy(m.astype(np.int64))
        if self.keep_image:
            item["raw"] = torch.from_numpy(image)
        return item
