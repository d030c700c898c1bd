"""``seeds``: seed maps (class id, 255 unlabelled) for the training split.

Made from ``cams.h5`` and ``saliency.h5`` (or ``--bg-source cam`` for users
without saliency), or imported from other tools: DSRG's
``localization_cues-sal.pickle`` (what the published DGCN code reads) and IRN-style per-image ``<id>.npy`` CAM dictionaries
(``keys``: 0-based foreground classes, ``high_res``: (n, H, W) CAMs). Both are
pickles, read with a restricted unpickler that runs no code.

DSRG's ``generate_train_gt.py`` keys its cues by the image's *index*, the integer second
column of the published code's ``input_list.txt`` (``2008_007028.jpg 0``): ``'0_labels'``
(the image's classes) and ``'0_cues'`` (``np.where`` of its (21, 41, 41) cue volume).
``dsrg_list`` gives that list; a pickle keyed by image id (``'2008_007028_labels'``) needs
none. A pixel cued for two classes takes the higher class index, as the published loader
gives it (``dsrg_overlap="unlabelled"`` leaves it 255 instead). Every image of the split
must have cues: the missing ones are named before anything is written.

DSRG's cues lie on a 41x41 grid over the whole image (its ``preprocess`` squashes every
image to 321x321, aspect ratio not kept). They are stored at the image's own size, like every
other label artifact (training crops them with the image, ``evaluate`` scores them as they
are), enlarged as the published loader enlarges them (hustvl/DGCN ``dataset.py``:
``scipy.ndimage.zoom(markers, (H/41, W/41), order=0)``): corners aligned, cell j at the
image's pixel j*(H-1)/40, which puts the edge cells' boundaries where the published training
saw them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .core.config import to_jsonable
from .core.cues.seeding import CUE_OVERLAPS, FusionConfig, cues_to_seeds, fuse_seeds
from .core.datasets import DataConfig
from .core.errors import DgcnError
from .core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter, fill
from .core.io.safe_pickle import safe_load
from .core import options
from .core.options import opt
from .core.stage import Progress, StageResult, wrote


@dataclass(frozen=True)
class SeedsConfig:
    out: Path = opt(help="seeds.h5 to write.", required=True)
    data: DataConfig = field(default_factory=DataConfig)
    cams: Optional[Path] = opt(None, "cams.h5 from `dgcn cam`.")
    saliency: Optional[Path] = opt(None, "saliency.h5 from `dgcn saliency-bg`.")
    fusion: FusionConfig = field(default_factory=FusionConfig)
    from_dsrg: Optional[Path] = opt(None, "Import DSRG's localization_cues-sal.pickle (its 41x41 cues over the whole image, "
                                          "stored at the image's size), as the published code reads it: a pixel cued for "
                                          "two classes takes the higher class index.")
    # DSRG's input_list.txt: 'IMAGE.jpg INDEX', for index-keyed cues
    dsrg_list: Optional[Path] = opt(None, "With --from-dsrg: the published code's input_list.txt ('IMAGE.jpg INDEX' lines), "
                                          "whose indices key DSRG's cues ('0_labels', '0_cues'). Not needed for a pickle "
                                          "keyed by image id.")
    # a pixel cued for two classes: the higher class (published) or 255
    dsrg_overlap: str = opt("higher", "With --from-dsrg, a pixel cued for two classes: higher (its higher class index, the "
                                      "published loader's result) or unlabelled (255).")
    from_irn: Optional[Path] = opt(None, "Use IRN-style <id>.npy CAM dictionaries from this folder instead of --cams.")
    overwrite: bool = options.overwrite_opt()
    resume: bool = options.resume_opt()

    def __post_init__(self) -> None:
        if self.dsrg_overlap not in CUE_OVERLAPS:
            raise DgcnError(f"--dsrg-overlap must be one of {', '.join(CUE_OVERLAPS)}, got {self.dsrg_overlap!r}")


# the list's name in the published code, for the message that asks for it
_DSRG_LIST_HINT = ("pass --dsrg-list with the published code's input_list.txt (the 'IMAGE.jpg INDEX' list "
                   "DSRG's generate_train_gt.py numbered the images by; DSRG's training/experiment/seed_mc/list/input_list.txt)")
_INDEX_KEY = re.compile(r"[0-9]+_labels")


def read_dsrg_list(path: Path) -> dict[str, int]:
    """DSRG's ``input_list.txt``: image id -> the index its cues are keyed by.

    One image per line, ``2008_007028.jpg 0`` or ``/JPEGImages/2008_007028.jpg 0``: the id is the
    file stem of the first column, the index the integer second column.
    """
    path = Path(path)
    if not path.is_file():
        raise DgcnError(f"--dsrg-list {path} not found (the published code's input_list.txt)")
    out: dict[str, int] = {}
    seen: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 2 or not re.fullmatch(r"[0-9]+", parts[1]):
            raise DgcnError(f"{path}:{lineno}: expected 'IMAGE.jpg INDEX' (DSRG's input_list.txt), got {line.strip()!r}")
        image_id, index = Path(parts[0]).stem, int(parts[1])
        if image_id in out:
            raise DgcnError(f"{path}:{lineno}: image {image_id!r} is listed twice")
        if index in seen:
            raise DgcnError(f"{path}:{lineno}: index {index} is given to both {seen[index]} and {image_id}")
        out[image_id], seen[index] = index, image_id
    return out


def _dsrg_seeds(path: Path, ids: Sequence[str], split: str, num_classes: int, list_path: Optional[Path],
                overlap: str) -> dict[str, np.ndarray]:
    """The 41x41 seed map of every image of the split, decoded before anything is written,
    so a missing image or a bad entry stops the stage with no output."""
    cues = safe_load(path)
    if not isinstance(cues, dict):
        raise DgcnError(f"{path}: expected a dict with '<index>_labels' and '<index>_cues' entries (DSRG's cue pickle)")
    keys = {k for k in cues if isinstance(k, str)}
    index = read_dsrg_list(list_path) if list_path is not None else None
    # DSRG's own pickles are keyed by index; one keyed by image id (e.g. re-keyed by hand) needs no list
    by_index = index is not None and any(i in index and f"{index[i]}_labels" in keys for i in ids)
    if not by_index and not any(f"{i}_labels" in keys for i in ids):
        label_keys = sorted(k for k in keys if k.endswith("_labels"))
        if index is None and label_keys and all(_INDEX_KEY.fullmatch(k) for k in label_keys):
            raise DgcnError(f"{path} is keyed by image index ('{label_keys[0]}'), not by image id: {_DSRG_LIST_HINT}")

    def key(image_id: str) -> Optional[str]:
        if not by_index:
            return image_id
        return str(index[image_id]) if image_id in index else None  # type: ignore[index]

    missing = [i for i in ids if key(i) is None or f"{key(i)}_labels" not in keys or f"{key(i)}_cues" not in keys]
    if missing:
        how = f"by their index in {list_path}" if by_index else "as '<id>_labels' / '<id>_cues'"
        raise DgcnError(
            f"{path} has no cues for {len(missing)} of {len(ids)} images of split {split!r} (looked up {how}): "
            f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        )
    seeds = {}
    for image_id in ids:
        k = key(image_id)
        try:
            seeds[image_id] = cues_to_seeds(cues[f"{k}_cues"], np.asarray(cues[f"{k}_labels"]), num_classes, overlap=overlap)
        except DgcnError as err:
            raise DgcnError(f"{path}, image {image_id} ('{k}_cues'): {err}") from None
    return seeds


def dsrg_to_image(seeds: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 41x41 DSRG seed map enlarged to (H, W) as the published loader does it."""
    from scipy.ndimage import zoom

    h, w = size
    out = zoom(np.asarray(seeds, dtype=np.uint8), (h / seeds.shape[0], w / seeds.shape[1]), order=0)
    if out.shape != (h, w):  # scipy rounds the output size: never off for 41 -> H, checked anyway
        raise DgcnError(f"DSRG seeds enlarged to {out.shape}, not the image's {size}")
    return out


def _irn_cams(folder: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    data = safe_load(Path(folder) / f"{image_id}.npy")
    if not isinstance(data, dict) or "keys" not in data or "high_res" not in data:
        raise DgcnError(f"{folder}/{image_id}.npy: expected an IRN CAM dict with 'keys' and 'high_res'")
    return np.asarray(data["high_res"], dtype=np.float32), np.asarray(data["keys"]).astype(np.int64) + 1


def _recorded_config(cfg: SeedsConfig) -> dict:
    """The config the artifact records (and its resume fingerprint covers): the DSRG import's
    options only where it imports, so CAM seeds keep the fingerprint they had before those
    options existed and an interrupted file of an earlier version still resumes."""
    record = to_jsonable(cfg)
    if cfg.from_dsrg is None:
        record.pop("dsrg_list", None)
        record.pop("dsrg_overlap", None)
    return record


def run(cfg: SeedsConfig, progress: Optional[Progress] = None) -> StageResult:
    given = [n for n, v in (("--from-dsrg", cfg.from_dsrg), ("--from-irn", cfg.from_irn), ("--cams", cfg.cams)) if v is not None]
    if len(given) > 1:
        raise DgcnError(f"give one seed source, not {' and '.join(given)}")
    if cfg.from_dsrg is not None and cfg.saliency is not None:
        raise DgcnError("--from-dsrg imports finished seeds: --saliency would be ignored, leave it out")
    if cfg.dsrg_list is not None and cfg.from_dsrg is None:
        raise DgcnError("--dsrg-list names the images of a DSRG cue pickle: it goes with --from-dsrg")
    ds = cfg.data.build()
    names = ds.class_names
    readers: list[ArtifactReader] = []
    inputs: dict[str, str] = {}

    def open_input(path: Path, kind: str) -> ArtifactReader:
        """An input artifact covering the split; closed at the end, fingerprinted into the output."""
        reader = ArtifactReader(path, kind=kind, class_names=names)
        readers.append(reader)
        reader.require_ids(ds.ids)
        inputs[kind] = reader.fingerprint
        return reader

    try:
        if cfg.from_dsrg is not None:
            dsrg = _dsrg_seeds(cfg.from_dsrg, ds.ids, ds.split, len(names), cfg.dsrg_list, cfg.dsrg_overlap)
            compute = lambda i: {"label": dsrg_to_image(dsrg[i], ds.load_image(i).shape[:2])}  # noqa: E731
            source = f"DSRG cues {cfg.from_dsrg}" + (f" (indices from {cfg.dsrg_list})" if cfg.dsrg_list else "")
        else:
            sal = None
            if cfg.fusion.bg_source == "saliency":
                if cfg.saliency is None:
                    raise DgcnError("--saliency FILE is needed for saliency background seeds (or use --bg-source cam)")
                sal = open_input(cfg.saliency, "saliency")
            if cfg.from_irn is not None:
                get_cams = lambda i: _irn_cams(cfg.from_irn, i)  # noqa: E731
                source = f"IRN CAMs {cfg.from_irn}"
            else:
                if cfg.cams is None:
                    raise DgcnError("--cams FILE is needed (from `dgcn cam`), or import seeds with --from-dsrg / --from-irn")
                cams = open_input(cfg.cams, "cams")
                get_cams = cams.cam
                source = f"CAMs {cfg.cams}"

            def compute(image_id: str) -> dict[str, np.ndarray]:
                cam, classes = get_cams(image_id)
                s = sal.saliency(image_id) if sal is not None else None
                return {"label": fuse_seeds(cam, classes, s, cfg.fusion)}

        meta = ArtifactMeta(
            kind="seeds", dataset=ds.name, split=ds.split, class_names=names,
            config=_recorded_config(cfg), inputs=inputs, extra={"source": source},
        )
        with ArtifactWriter(cfg.out, meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(ds.ids)) as writer:
            return wrote(fill(writer, ds.ids, compute, progress))
    finally:
        for r in readers:
            r.close()
