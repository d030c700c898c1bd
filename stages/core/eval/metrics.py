"""Segmentation metrics from one confusion matrix (built with ``bincount``).

Rows are ground-truth classes, columns predicted classes plus a last column
for "unlabelled" predictions (255 in seeds and proxy labels). Ground-truth 255
is ignored. An unlabelled prediction counts as a miss for its ground-truth
class, so an incomplete label map is not rewarded in mIoU; precision and
coverage describe such maps directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


class ConfusionMatrix:
    def __init__(self, num_classes: int) -> None:
        self.n = num_classes
        self.mat = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.shape != pred.shape:
            raise ValueError(f"shape mismatch: ground truth {gt.shape}, prediction {pred.shape}")
        gt = gt.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        valid = gt < self.n  # drops 255 and any out-of-range id
        pred = np.where((pred >= self.n), self.n, pred)  # 255 and unknown -> "unlabelled"
        idx = gt[valid] * (self.n + 1) + pred[valid]
        self.mat += np.bincount(idx, minlength=self.n * (self.n + 1)).reshape(self.n, self.n + 1)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.mat += other.mat

    def results(self, class_names: Sequence[str]) -> "SegMetrics":
        m = self.mat.astype(np.float64)
        tp = np.diag(m[:, : self.n])
        gt_count = m.sum(axis=1)
        pred_count = m[:, : self.n].sum(axis=0)
        union = gt_count + pred_count - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            class_acc = np.where(gt_count > 0, tp / gt_count, np.nan)
        total = m.sum()
        labelled = m[:, : self.n].sum()
        freq = gt_count / total if total else np.zeros_like(gt_count)
        objects = _object_scores(tp, gt_count, pred_count, total) if class_names[0] == "background" else {}
        return SegMetrics(
            class_names=list(class_names),
            iou=iou,
            miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            pixel_acc=float(tp.sum() / total) if total else float("nan"),
            mean_class_acc=float(np.nanmean(class_acc)) if np.isfinite(class_acc).any() else float("nan"),
            fwiou=float(np.nansum(freq * np.nan_to_num(iou))) if total else float("nan"),
            precision=float(tp.sum() / labelled) if labelled else float("nan"),
            coverage=float(labelled / total) if total else float("nan"),
            pixels=int(total),
            **objects,
        )


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def _object_scores(tp: np.ndarray, gt_count: np.ndarray, pred_count: np.ndarray, total: float) -> dict:
    """Object classes pooled: a pixel counts as right only with its own class (a cat called a dog
    is a miss for recall and a false object for precision)."""
    hit = tp[1:].sum()
    return dict(
        object_recall=_ratio(hit, gt_count[1:].sum()),
        object_precision=_ratio(hit, pred_count[1:].sum()),
        object_share=_ratio(pred_count[1:].sum(), total),
        object_share_gt=_ratio(gt_count[1:].sum(), total),
    )


@dataclass
class SegMetrics:
    class_names: list[str]
    iou: np.ndarray
    miou: float
    pixel_acc: float
    mean_class_acc: float
    fwiou: float
    precision: float  # of the labelled (non-255) predicted pixels, the fraction correct
    coverage: float  # of the valid ground-truth pixels, the fraction given a label
    pixels: int
    # object classes pooled (NaN where class 0 is not background): of the ground-truth object
    # pixels, the share given their class; of the pixels predicted as an object, the share
    # right; the share of valid pixels predicted as objects, and the share that are
    object_recall: float = float("nan")
    object_precision: float = float("nan")
    object_share: float = float("nan")
    object_share_gt: float = float("nan")

    def to_dict(self) -> dict:
        def num(x: float):
            return None if np.isnan(x) else round(float(x), 6)

        return {
            "miou": num(self.miou),
            "pixel_acc": num(self.pixel_acc),
            "mean_class_acc": num(self.mean_class_acc),
            "fwiou": num(self.fwiou),
            "precision": num(self.precision),
            "coverage": num(self.coverage),
            "pixels": self.pixels,
            "object_recall": num(self.object_recall),
            "object_precision": num(self.object_precision),
            "object_share": num(self.object_share),
            "object_share_gt": num(self.object_share_gt),
            "per_class_iou": {n: num(v) for n, v in zip(self.class_names, self.iou)},
        }
