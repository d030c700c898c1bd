"""What each artifact kind holds per image, declared once.

The writer refuses an item that does not match its kind's schema, and the reader's typed
accessors (``ArtifactReader.label``/``cam``/``saliency``) read the arrays by these
names, so a stage and the stage that reads its output cannot drift apart. ``dgcn inspect``
prints the schema of the artifact it shows.

Dimensions: ``H``, ``W`` the image's own size; ``n`` a count shared by the item's arrays (the
image's present classes in a CAM item); ``C`` the artifact's number of classes, background
included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import ArtifactError


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    dims: tuple[str, ...]
    doc: str
    required: bool = True


@dataclass(frozen=True)
class Schema:
    kind: str
    made_by: str  # the command that makes it (for error messages)
    arrays: Mapping[str, ArraySpec]

    def describe(self) -> list[str]:
        """One line per array, as ``dgcn inspect`` prints them."""
        return [f"{name}: {spec.dtype} ({', '.join(spec.dims)}){'' if spec.required else ', optional'} - {spec.doc}"
                for name, spec in self.arrays.items()]


_LABEL = ArraySpec("uint8", ("H", "W"), "class id per pixel, 0 = background, 255 = unlabelled")

SCHEMAS: dict[str, Schema] = {
    s.kind: s
    for s in (
        Schema("cams", "dgcn cam", {
            "cam": ArraySpec("float16", ("n", "H", "W"), "ReLU'd, max-normalised CAM of each present class"),
            "classes": ArraySpec("uint8", ("n",), "the class id (1-based) of each CAM"),
        }),
        Schema("saliency", "dgcn saliency-bg", {
            "saliency": ArraySpec("float16", ("H", "W"), "foreground saliency in [0, 1]"),
        }),
        Schema("seeds", "dgcn seeds", {"label": _LABEL}),
        Schema("labels", "dgcn graphcut-label", {"label": _LABEL}),
        Schema("predictions", "dgcn infer", {
            "label": _LABEL,
            "prob": ArraySpec("float16", ("C", "H", "W"), "class probabilities (--save-probs)", required=False),
        }),
    )
}

#: kind -> the command that makes it
KINDS: dict[str, str] = {kind: s.made_by for kind, s in SCHEMAS.items()}
#: kinds whose items hold a uint8 ``label`` map (255 = unlabelled)
LABEL_KINDS = tuple(kind for kind, s in SCHEMAS.items() if "label" in s.arrays)


def check_item(kind: str, arrays: Mapping[str, np.ndarray], num_classes: int, where: str) -> None:
    """Refuse an item that its kind's schema does not allow: unknown or missing arrays,
    another dtype or number of dimensions, or sizes that disagree (``n``, ``C``, ``H``/``W``)."""
    schema = SCHEMAS[kind]
    unknown = sorted(set(arrays) - set(schema.arrays))
    if unknown:
        raise ArtifactError(f"{where}: '{unknown[0]}' is not an array of a '{kind}' artifact "
                            f"(it holds {', '.join(schema.arrays)})")
    missing = [n for n, s in schema.arrays.items() if s.required and n not in arrays]
    if missing:
        raise ArtifactError(f"{where}: a '{kind}' item needs '{missing[0]}'")
    sizes: dict[str, int] = {"C": num_classes}
    for name, arr in arrays.items():
        spec = schema.arrays[name]
        arr = np.asarray(arr)
        if arr.dtype != np.dtype(spec.dtype) or arr.ndim != len(spec.dims):
            raise ArtifactError(f"{where}: '{name}' must be {spec.dtype} ({', '.join(spec.dims)}), "
                                f"got {arr.dtype} {tuple(arr.shape)}")
        _agree(sizes, spec.dims, arr.shape, name, where)


def _agree(sizes: dict[str, int], dims: Sequence[str], shape: Sequence[int], name: str, where: str) -> None:
    for dim, size in zip(dims, shape):
        if sizes.setdefault(dim, int(size)) != size:
            raise ArtifactError(f"{where}: '{name}' has {dim} = {size}, other arrays of the item {sizes[dim]}")
