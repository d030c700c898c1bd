"""``show``: a PNG grid of images next to their CAMs, saliency, seeds, labels and masks.

One row per image; columns, each present only when its source was given:
image | one CAM heatmap per present class | saliency | seeds | proxy labels |
prediction | ground truth. Every panel is scaled so its longer side is
``tile`` px (nearest-neighbour for label maps, so a 41x41 seed grid shows its
real cells) and centred in a ``tile`` x ``tile`` cell. The legend lists only
the classes that appear in the grid, plus "unlabelled" (255).
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .core import options
from .core.datasets import DataConfig, SegDataset
from .core.errors import ArtifactError, DatasetError, DgcnError
from .core.eval import render
from .core.io.artifacts import ArtifactReader
from .core.io.files import atomic_path
from .core.io.images import resize_image, resize_label, resize_map
from .core.maps import IGNORE
from .core.options import opt
from .core.stage import Progress, StageResult, wrote

# (config field, artifact kind, column title) in column order
MAP_SOURCES = (("saliency", "saliency", "saliency"),)
LABEL_SOURCES = (
    ("seeds", "seeds", "seeds"),
    ("labels", "labels", "proxy labels"),
    ("pred", "predictions", "prediction"),
)
GT_TITLE = "ground truth"
HEAT_LEGEND = "score 0 to 1"
UNLABELLED_LEGEND = "unlabelled"


@dataclass(frozen=True)
class ShowConfig:
    out: Path = opt(help="PNG file to write (replaced if it exists).", required=True)
    data: DataConfig = field(default_factory=DataConfig)
    cams: Optional[Path] = opt(None, "cams.h5 from `dgcn cam`: one heatmap column per present class.")
    saliency: Optional[Path] = opt(None, "saliency.h5 from `dgcn saliency-bg`.")
    seeds: Optional[Path] = opt(None, "seeds.h5 from `dgcn seeds` (or imported cues).")
    labels: Optional[Path] = opt(None, "labels.h5 (proxy labels) from `dgcn graphcut-label`.")
    pred: Optional[Path] = opt(None, "pred.h5 from `dgcn infer`.")
    # None: show ground truth when the split has masks
    gt: Optional[bool] = opt(None, "Ground-truth column. Default: shown when the split has masks.")
    ids: tuple[str, ...] = opt((), "Comma-separated image ids, one row each (overrides --n).",
                               parse=lambda t: options.names(t) or (), show=lambda v: ",".join(v))
    n: int = opt(4, "How many images (the split's first ones unless --random).")
    random: bool = opt(False, "Pick --n images at random (reproducible with --seed).")
    seed: int = opt(0, "Random seed.")
    overlay: bool = opt(False, "Draw label maps as colour overlays on the image.")
    alpha: float = opt(0.5, "Opacity of the --overlay colours.")
    tile: int = opt(160, "Cell size in px (longer side of each panel).")

    def __post_init__(self) -> None:
        if self.tile < render.MIN_TILE:
            raise DgcnError(f"--tile {self.tile} is too small to read; use at least {render.MIN_TILE}")
        if self.n < 1:
            raise DgcnError(f"--n {self.n}: show at least one image")
        if not 0.0 <= self.alpha <= 1.0:
            raise DgcnError(f"overlay alpha {self.alpha} must lie in [0, 1]")


@dataclass
class _Row:
    image_id: str
    image: np.ndarray  # already at panel size
    size: tuple[int, int]
    cams: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (class id, map)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # at panel size


def choose_ids(cfg: ShowConfig, ds: SegDataset, readers: dict[str, ArtifactReader]) -> list[str]:
    """``cfg.ids`` as given (all must exist), else the first or a random ``cfg.n`` of
    the split's images that every given artifact holds."""
    if cfg.ids:
        known = set(ds.ids)
        unknown = [i for i in cfg.ids if i not in known]
        if unknown:
            raise DgcnError(f"unknown image id(s) in {ds.name}/{ds.split}: {', '.join(unknown)}")
        for reader in readers.values():
            missing = [i for i in cfg.ids if i not in reader]
            if missing:
                raise ArtifactError(
                    f"{reader.path} has no entry for image(s) {', '.join(missing)} "
                    f"(it was made for {reader.dataset}/{reader.split})"
                )
        return list(cfg.ids)
    pool = [i for i in ds.ids if all(i in r for r in readers.values())]
    if not pool:
        paths = ", ".join(str(r.path) for r in readers.values())
        raise ArtifactError(f"no image of {ds.name}/{ds.split} is in every given artifact ({paths}); check --split")
    k = min(cfg.n, len(pool))
    if cfg.random:
        picked = np.random.default_rng(cfg.seed).choice(len(pool), size=k, replace=False)
        # dataset order, so the same seed and split read the same top to bottom
        return [pool[j] for j in sorted(picked)]
    return pool[:k]


def _load_row(image_id: str, cfg: ShowConfig, ds: SegDataset, readers: dict[str, ArtifactReader], show_gt: bool) -> _Row:
    image = ds.load_image(image_id)
    size = render.fit_size(image.shape[:2], cfg.tile)
    row = _Row(image_id, resize_image(image, size), size)
    if "cams" in readers:
        cam, classes = readers["cams"].cam(image_id)
        if cam.ndim != 3 or len(cam) != len(classes):
            raise ArtifactError(
                f"{readers['cams'].path}: image {image_id} has cam of shape {cam.shape} for {len(classes)} classes"
            )
        row.cams = [(int(c), resize_map(m, size)) for c, m in zip(classes, cam)]
    for role, _, _ in MAP_SOURCES:
        if role in readers:
            row.maps[role] = resize_map(readers[role].get(image_id, role), size)
    for role, _, _ in LABEL_SOURCES:
        if role in readers:
            row.labels[role] = resize_label(readers[role].label(image_id), size)
    if show_gt:
        row.labels["gt"] = resize_label(ds.load_mask(image_id), size)
    return row


def _class_name(names: Sequence[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else f"class {c}"


def build_grid(rows: list[_Row], cfg: ShowConfig, class_names: Sequence[str], label_roles: Sequence[tuple[str, str]]):
    """The PIL image for ``rows``; ``label_roles`` is (role, title) per label column."""
    n_cam = max((len(r.cams) for r in rows), default=0) if cfg.cams is not None else 0
    map_roles = [(role, title) for role, _, title in MAP_SOURCES if getattr(cfg, role) is not None]
    headers = ["image"] + ["CAM"] * n_cam + [t for _, t in map_roles] + [t for _, t in label_roles]
    seen: set[int] = set()
    panels = []
    for r in rows:
        cells: list[Optional[np.ndarray]] = [render.caption(r.image, r.image_id, where="bottom")]
        for k in range(n_cam):
            if k < len(r.cams):
                c, m = r.cams[k]
                cells.append(render.caption(render.heatmap(m), _class_name(class_names, c)))
            else:
                cells.append(None)
        cells += [render.heatmap(r.maps[role]) for role, _ in map_roles]
        for role, _ in label_roles:
            lab = r.labels[role]
            seen.update(int(v) for v in np.unique(lab))
            cells.append(render.overlay(r.image, lab, cfg.alpha) if cfg.overlay else render.colorize(lab))
        panels.append(cells)
    entries: list[render.LegendEntry] = []
    if n_cam or map_roles:
        entries.append(render.LegendEntry(HEAT_LEGEND))
    if label_roles:
        entries += [render.LegendEntry(_class_name(class_names, c), c) for c in sorted(seen - {IGNORE})]
        entries.append(render.LegendEntry(UNLABELLED_LEGEND, IGNORE))
    return render.compose_grid(headers, panels, cfg.tile, entries)


def run(cfg: ShowConfig, progress: Optional[Progress] = None) -> StageResult:
    """Draw the grid and write it to ``cfg.out`` (PNG, atomically); returns the path."""
    ds = cfg.data.build()
    if cfg.gt and not ds.has_masks():
        raise DatasetError(f"{ds.name}/{ds.split} has no ground-truth masks; drop --gt")
    show_gt = ds.has_masks() if cfg.gt is None else cfg.gt
    sources = (("cams", "cams"),) + tuple((role, kind) for role, kind, _ in MAP_SOURCES + LABEL_SOURCES)
    with ExitStack() as stack:
        readers: dict[str, ArtifactReader] = {}
        for role, kind in sources:
            path = getattr(cfg, role)
            if path is not None:
                readers[role] = stack.enter_context(ArtifactReader(path, kind=kind, class_names=ds.class_names))
        ids = choose_ids(cfg, ds, readers)
        rows = []
        for i in ids:
            rows.append(_load_row(i, cfg, ds, readers, show_gt))
            if progress:
                progress(len(rows), len(ids), info=i)
    label_roles = [(role, title) for role, _, title in LABEL_SOURCES if getattr(cfg, role) is not None]
    if show_gt:
        label_roles.append(("gt", GT_TITLE))
    grid = build_grid(rows, cfg, ds.class_names, label_roles)
    out = Path(cfg.out)
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")
    return wrote(out)
