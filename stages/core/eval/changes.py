"""What one label map made of another, scored against ground truth: the pixels an expander
(or any later stage) added to the seeds, and what it did to the seeds themselves.

Every pixel whose ground truth is not ``IGNORE`` falls in exactly one group, by the reference
(the earlier map, e.g. the seeds) and the new map:

- ``added``: unlabelled in the reference, labelled in the new map;
- ``left``: unlabelled in both;
- ``removed``: labelled in the reference, unlabelled in the new map;
- ``kept``: labelled in both, with the same class;
- ``relabelled``: labelled in both, with another class.

For each group the count and how many of its pixels each map has right; ``added`` also per
class of the new label (the class-wise precision of what was added). Two figures answer the
questions an expander raises: the precision of what it adds, and of the reference's wrong
pixels, the share it corrected (relabelled to the truth) against the share it kept.

Where the additions come from: per class c, of the pixels added as c wrongly (and, for
contrast, rightly), the share nearer a wrong reference pixel of c than a right one (Euclidean
distance in the image; an image without wrong reference pixels of c counts as not nearer). An
expander that grows the seeds' errors adds its wrong pixels next to the wrong seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..maps import IGNORE

GROUPS = ("added", "left", "removed", "kept", "relabelled")


@dataclass
class LabelChanges:
    """Accumulates ``update(gt, reference, new)`` over a split; ``results`` sums it up."""

    num_classes: int
    counts: dict = field(default_factory=lambda: {g: 0 for g in GROUPS})
    new_right: dict = field(default_factory=lambda: {g: 0 for g in GROUPS})
    ref_right: dict = field(default_factory=lambda: {g: 0 for g in GROUPS})
    added_by_class: np.ndarray = None  # (C, 2): pixels added as class c, of them right
    # (C, 2): of the pixels added as c wrongly / rightly, those nearer a wrong reference pixel
    # of c than a right one
    near_wrong: np.ndarray = None
    ref_wrong: int = 0  # reference-labelled pixels whose class is wrong
    wrong_corrected: int = 0  # of those, relabelled to the truth
    wrong_kept: int = 0  # of those, kept with the same (wrong) class

    def __post_init__(self) -> None:
        if self.added_by_class is None:
            self.added_by_class = np.zeros((self.num_classes, 2), np.int64)
        if self.near_wrong is None:
            self.near_wrong = np.zeros((self.num_classes, 2), np.int64)

    def update(self, gt: np.ndarray, reference: np.ndarray, new: np.ndarray) -> None:
        if not gt.shape == reference.shape == new.shape:
            raise ValueError(f"ground truth, reference and new labels differ in size: {gt.shape}, "
                             f"{reference.shape}, {new.shape}")
        valid = gt != IGNORE
        g, r, n = gt[valid].astype(np.int64), reference[valid].astype(np.int64), new[valid].astype(np.int64)
        r_lab, n_lab = r != IGNORE, n != IGNORE
        groups = {
            "added": ~r_lab & n_lab,
            "left": ~r_lab & ~n_lab,
            "removed": r_lab & ~n_lab,
            "kept": r_lab & n_lab & (r == n),
            "relabelled": r_lab & n_lab & (r != n),
        }
        for name, sel in groups.items():
            self.counts[name] += int(sel.sum())
            self.new_right[name] += int((sel & (n == g)).sum())
            self.ref_right[name] += int((sel & (r == g)).sum())
        add = groups["added"]
        cls = n[add]
        inside = cls < self.num_classes  # a label outside the class list counts as added, never right
        np.add.at(self.added_by_class[:, 0], cls[inside], 1)
        np.add.at(self.added_by_class[:, 1], cls[inside & (cls == g[add])], 1)
        added = np.zeros(gt.shape, bool)
        added[valid] = add
        self._origins(gt, reference, new, added)
        wrong = r_lab & (r != g)
        self.ref_wrong += int(wrong.sum())
        self.wrong_corrected += int((wrong & n_lab & (n == g)).sum())
        self.wrong_kept += int((wrong & (n == r)).sum())

    def _origins(self, gt: np.ndarray, reference: np.ndarray, new: np.ndarray, added: np.ndarray) -> None:
        """Per class added here (``added``: the image's added pixels): are its added pixels
        nearer a wrong reference pixel of the class than a right one? (two distance transforms
        per class an image adds)"""
        for c in np.unique(new[added]):
            if c >= self.num_classes:
                continue
            ref_c = reference == c
            wrong_ref, right_ref = ref_c & (gt != IGNORE) & (gt != c), ref_c & (gt == c)
            if not wrong_ref.any():
                continue
            d_wrong = distance_transform_edt(~wrong_ref)
            d_right = distance_transform_edt(~right_ref) if right_ref.any() else np.full(gt.shape, np.inf)
            nearer = added & (new == c) & (d_wrong < d_right)
            self.near_wrong[c, 0] += int((nearer & (gt != c)).sum())
            self.near_wrong[c, 1] += int((nearer & (gt == c)).sum())

    def results(self, class_names: Sequence[str]) -> dict:
        """Counts, and precisions in [0, 1] (None where a group is empty)."""
        def frac(a: int, b: int):
            return a / b if b else None

        total = sum(self.counts.values())
        unlabelled = self.counts["added"] + self.counts["left"]
        out = {
            "pixels": total,
            "reference_labelled": total - unlabelled,
            "added_fraction_of_unlabelled": frac(self.counts["added"], unlabelled),
            "added_precision": frac(self.new_right["added"], self.counts["added"]),
            "reference_wrong": self.ref_wrong,
            "wrong_corrected": frac(self.wrong_corrected, self.ref_wrong),
            "wrong_kept": frac(self.wrong_kept, self.ref_wrong),
            "groups": {g: {"pixels": self.counts[g], "new_right": self.new_right[g], "reference_right": self.ref_right[g]}
                       for g in GROUPS},
            "added_by_class": {
                name: {"pixels": int(self.added_by_class[c, 0]),
                       "precision": frac(int(self.added_by_class[c, 1]), int(self.added_by_class[c, 0])),
                       # of the wrong / right additions, the share nearer a wrong reference pixel
                       "wrong_near_wrong_reference": frac(int(self.near_wrong[c, 0]),
                                                          int(self.added_by_class[c, 0] - self.added_by_class[c, 1])),
                       "right_near_wrong_reference": frac(int(self.near_wrong[c, 1]), int(self.added_by_class[c, 1]))}
                for c, name in enumerate(class_names) if self.added_by_class[c, 0]
            },
        }
        return out
