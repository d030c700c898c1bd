"""``infer``: run a trained segmentation network over a dataset split or a folder of images.

Protocol (the paper's test protocol, recorded in ``pred.h5``): softmax averaged
over scales (default 0.75, 1, 1.25) and their horizontal mirrors, each
upsampled bilinearly to the image size, then (by default) a dense CRF at full
image size with the DeepLab parameters. Writes ``<out>/pred.h5`` (kind
``predictions``: per image a uint8 ``label`` map and, optionally, float16
``prob`` (C, H, W)) and VOC-coloured palette PNGs in ``<out>/png/<id>.png``.
With ``voc_results`` (``--voc-results DIR``) each prediction is also written where the VOC
evaluation server wants it, ``DIR/results/VOC2012/Segmentation/comp6_<split>_cls/<id>.png``
(comp6: trained with data from outside VOC, ImageNet weights): a tar of ``DIR/results``
is the upload that scores VOC's test split, whose masks are not public.

Images are decoded in DataLoader worker processes. An image that cannot be
read is reported, skipped and counted; it never ends the run.
"""
from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .core import checks, options
from .core.config import to_jsonable
from .core.cues.crf import CrfConfig, CrfPool
from .core.datasets import DataConfig
from .core.device import resolve_device
from .core.errors import ArtifactError, DatasetError, DgcnError
from .core.io.artifacts import (
    ArtifactMeta,
    ArtifactReader,
    ArtifactWriter,
    partial_path,
)
from .core.options import opt
from .core.io.images import IMAGE_SUFFIXES, read_image, write_palette_png
from .core.predict.segmenter import (
    COMBINE,
    TEST_SCALES,
    Segmenter,
    load_segmenter_checkpoint,
    predict_probs_batch,
)
from .core.stage import Progress, StageResult

# Protocol keys that must match for --resume to continue a partial pred.h5.
_PROTOCOL_KEYS = ("scales", "flip", "combine", "crf", "crf_params", "save_probs")


@dataclass(frozen=True)
class InferConfig:
    checkpoint: Path = opt(help="Segmentation checkpoint from `dgcn train` or `dgcn retrain`.", required=True, exists=True)
    out: Path = opt(help="Output folder: pred.h5 and png/<id>.png.", required=True)
    # a dataset split (its options default to the val split) ...
    data: Optional[DataConfig] = options.section(None, cli_defaults=DataConfig(split="val"))
    # ... or a folder of images (exactly one of the two)
    images: Optional[Path] = opt(None, "A folder of images (any size; JPEG, PNG, ...) instead of a dataset; id = file name "
                                       "stem. Wins over DGCN_DATASET.", exists=True, instead_of="data")
    scales: tuple[float, ...] = opt(TEST_SCALES, "Test scales, comma-separated.",
                                    parse=lambda t: options.floats(t, "--scales"), show=options.show_floats)
    flip: bool = opt(True, "Also average over horizontal mirrors.")
    combine: str = opt("softmax", "softmax: mean of per-scale softmaxes; logits: logits summed over scales, one softmax "
                                  "(the published evaluate.py).")
    crf: bool = opt(True, "Dense CRF at full image size (the paper's protocol).")
    save_probs: bool = opt(False, "Also store class probabilities (float16, C x H x W) in pred.h5.")
    png: bool = opt(True, "Write VOC-coloured palette PNGs to <out>/png.")
    voc_results: Optional[Path] = opt(None, "With --dataset voc: also write each prediction as DIR/results/VOC2012/"
                                            "Segmentation/comp6_<split>_cls/<id>.png, the layout the VOC evaluation server "
                                            "takes (upload a tar of DIR/results); how --split test is scored.")
    batch_size: int = opt(1, "Images per batch; images of the same size share forward passes.")
    workers: int = options.workers_opt()
    crf_workers: int = options.crf_workers_opt(1)
    device: str = options.device_opt()
    resume: bool = options.resume_opt()
    overwrite: bool = options.overwrite_opt()

    def __post_init__(self) -> None:
        if (self.data is None) == (self.images is None):
            raise DgcnError("infer needs either a dataset split (--dataset/--split) or --images DIR, not both")
        checks.scales("--scales", self.scales)
        if self.combine not in COMBINE:
            raise DgcnError(f"--combine must be one of {', '.join(COMBINE)}, got {self.combine!r}")
        checks.number("--batch-size", self.batch_size, lo=1, integer=True)
        checks.number("--workers", self.workers, lo=0, integer=True)
        checks.number("--crf-workers", self.crf_workers, lo=0, integer=True)
        if self.voc_results is not None and (self.data is None or self.data.dataset != "voc"):
            raise DgcnError("--voc-results writes the VOC evaluation server's layout: it needs --dataset voc and a --split")


@dataclass(frozen=True)
class InferSummary:
    path: Path  # pred.h5
    png_dir: Optional[Path]
    total: int  # images in the split or folder
    done: int  # predicted by this run
    skipped: int  # already in pred.h5 (--resume)
    failed: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (image id, reason)
    voc_dir: Optional[Path] = None  # the evaluation server's folder of PNGs (--voc-results)
    voc_root: Optional[Path] = None  # --voc-results: the folder whose results/ is uploaded

    def lines(self) -> list[str]:
        """What a person reads after the run: the counts, what was not retried, what failed, where it went."""
        out = [f"infer: {self.total} images: {self.done} predicted, {self.skipped} skipped (already done), {len(self.failed)} failed"]
        untried = self.total - self.done - self.skipped - len(self.failed)
        if untried:
            out.append(f"{untried} image(s) not in the finished {self.path.name} were not retried; use --overwrite to redo all")
        if self.failed:
            out.append("failed (unreadable): " + ", ".join(i for i, _ in self.failed))
        out.append(f"wrote {self.path}" + (f" and {self.png_dir}/" if self.png_dir else ""))
        if self.voc_dir is not None:
            out.append(f"wrote {self.voc_dir}/: upload a tar of it (tar -C {self.voc_root} -czf results.tgz results) "
                       "to the VOC evaluation server")
        return out


def pred_path(out: Path) -> Path:
    return Path(out) / "pred.h5"


def voc_results_dir(root: Path, split: str) -> Path:
    """Where the VOC evaluation server takes segmentation results: competition 6 (outside
    training data: ImageNet), ``<split>`` the image set (``test``)."""
    return Path(root) / "results" / "VOC2012" / "Segmentation" / f"comp6_{split}_cls"


def folder_images(folder: Path) -> list[tuple[str, Path]]:
    """(id = file stem, path) of every image file directly in ``folder``, sorted by id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"--images {folder} is not a folder")
    by_id: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in by_id:
            raise DatasetError(
                f"{by_id[p.stem].name} and {p.name} in {folder} would both be image id {p.stem!r}; rename one"
            )
        by_id[p.stem] = p
    if not by_id:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return sorted(by_id.items())


class _ImageFiles(Dataset):
    """Decodes one image per item; a failure becomes a message, so a worker never dies on a bad file."""

    def __init__(self, items: Sequence[tuple[str, Path]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[str, Optional[np.ndarray], Optional[str]]:
        image_id, path = self.items[i]
        try:
            return image_id, read_image(path), None
        except DgcnError as err:
            return image_id, None, str(err)
        except Exception as err:  # noqa: BLE001 - e.g. PIL's DecompressionBombError: still one bad file
            return image_id, None, f"cannot read image {path}: {err.__class__.__name__}: {err}"


def _keep_list(batch: list) -> list:
    return batch


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _source(cfg: InferConfig, seg: Segmenter) -> tuple[list[tuple[str, Path]], str, str, tuple[str, ...]]:
    """(items, dataset name, split, class names) for the artifact."""
    if cfg.data is not None:
        ds = cfg.data.build()
        seg.check_classes(ds.class_names, dataset=f"dataset {ds.name!r}")
        return [(i, ds.image_path(i)) for i in ds.ids], ds.name, ds.split, tuple(ds.class_names)
    folder = Path(cfg.images)  # type: ignore[arg-type]
    return folder_images(folder), "images", folder.resolve().name, seg.names_or_default()


def _protocol(cfg: InferConfig) -> dict[str, Any]:
    return {
        "scales": [float(s) for s in cfg.scales],
        "flip": cfg.flip,
        "crf": cfg.crf,
        "crf_params": to_jsonable(CrfConfig()) if cfg.crf else None,
        "save_probs": cfg.save_probs,
        "resolution": "image",
        "combine": cfg.combine,
        "upsampling": ("softmax per scale/flip, bilinear to the image size, mean" if cfg.combine == "softmax"
                       else "logits per scale/flip, bilinear to the image size, summed, then softmax"),
        "prob": "after CRF" if cfg.crf else "before CRF",
    }


def _check_partial(path: Path, extra: dict[str, Any], cfg: InferConfig) -> None:
    """Name the protocol option that differs when resuming an interrupted run (a rerun
    without --resume is refused by ArtifactWriter, as for every stage)."""
    partial = partial_path(path)
    if path.exists() or not partial.exists() or cfg.overwrite or not cfg.resume:
        return
    try:
        with h5py.File(partial, "r") as f:
            started = json.loads(f.attrs.get("extra", "{}"))
    except (OSError, ValueError):
        return  # ArtifactWriter reports a damaged partial with its own message
    diff = [k for k in _PROTOCOL_KEYS if started.get(k) != extra.get(k)]
    if diff:
        k = diff[0]
        raise ArtifactError(
            f"{partial} was started with {k}={started.get(k)}, not {extra.get(k)}; "
            "resume with the same options or pass --overwrite"
        )


def run(cfg: InferConfig, progress: Optional[Progress] = None) -> StageResult:
    """Predict every image of the split or folder not yet in ``<out>/pred.h5``; ``details`` is
    the ``InferSummary`` (the counts), ``warnings`` name each image that could not be read."""
    summary = _infer(cfg, progress)
    written = (summary.path, *(d for d in (summary.png_dir, summary.voc_dir) if d is not None))
    return StageResult(written, "\n".join(summary.lines()), tuple(f"skipped {i}: {e}" for i, e in summary.failed), summary)


def _infer(cfg: InferConfig, progress: Optional[Progress]) -> InferSummary:
    device = resolve_device(cfg.device)
    seg = load_segmenter_checkpoint(cfg.checkpoint, device)
    items, dataset, split, class_names = _source(cfg, seg)
    out = Path(cfg.out)
    path = pred_path(out)
    extra = {**_protocol(cfg), "model": seg.provenance}
    _check_partial(path, extra, cfg)
    meta = ArtifactMeta(
        kind="predictions", dataset=dataset, split=split, class_names=class_names,
        # --voc-results only says where copies of the PNGs go (like --out): left out, so it may be
        # added when resuming or to a finished run
        config={k: v for k, v in to_jsonable(cfg).items() if k != "voc_results"},
        inputs={"checkpoint": file_fingerprint(cfg.checkpoint)},
        extra=extra,
    )
    png_dir = out / "png" if cfg.png else None
    voc_dir = voc_results_dir(cfg.voc_results, split) if cfg.voc_results is not None else None
    png_dirs = tuple(d for d in (png_dir, voc_dir) if d is not None)
    with ArtifactWriter(path, meta, overwrite=cfg.overwrite, resume=cfg.resume, expected=len(items)) as writer:
        done_before = writer.done
        todo = [(i, p) for i, p in items if i not in done_before]
        skipped = len(items) - len(todo)
        if not writer.finished:
            for d in png_dirs:
                d.mkdir(parents=True, exist_ok=True)
            with CrfPool(cfg.crf_workers if cfg.crf else 0) as pool:
                done, failed = _predict_all(cfg, seg, writer, todo, skipped, len(items), png_dirs, pool, device, progress)
            if done + skipped == 0:
                raise DatasetError(
                    f"none of the {len(items)} images could be read (e.g. {failed[0][1]}); nothing written"
                )
            # the file is complete for every readable image; which ones were not is recorded
            writer.finish(unreadable=[image_id for image_id, _ in failed])
        else:
            done, failed = 0, []
    if voc_dir is not None:
        # images predicted before this run (--resume, or --voc-results added to a finished run)
        _complete_voc_results(path, voc_dir, class_names)
    return InferSummary(path, png_dir, len(items), done, skipped, tuple(failed), voc_dir, cfg.voc_results)


def _complete_voc_results(path: Path, voc_dir: Path, class_names: Sequence[str]) -> None:
    """Write the server PNG of every prediction in ``path`` that has none yet."""
    voc_dir.mkdir(parents=True, exist_ok=True)
    with ArtifactReader(path, kind="predictions", class_names=class_names) as reader:
        for image_id in reader.ids:
            if not (voc_dir / f"{image_id}.png").is_file():
                write_palette_png(voc_dir / f"{image_id}.png", reader.label(image_id))


def _predict_all(
    cfg: InferConfig,
    seg: Segmenter,
    writer: ArtifactWriter,
    todo: list[tuple[str, Path]],
    skipped: int,
    total: int,
    png_dirs: Sequence[Path],
    pool: CrfPool,
    device: torch.device,
    progress: Optional[Progress],
) -> tuple[int, list[tuple[str, str]]]:
    loader = DataLoader(
        _ImageFiles(todo), batch_size=cfg.batch_size, shuffle=False,
        num_workers=cfg.workers, collate_fn=_keep_list,
    )
    crf_cfg = CrfConfig()
    failed: list[tuple[str, str]] = []
    done = 0
    # CRFs run ahead in the pool while the network works on the next batch;
    # results are written in order, so an interrupted run loses only the queue.
    pending: deque = deque()
    max_pending = 2 * cfg.crf_workers + cfg.batch_size if cfg.crf and cfg.crf_workers > 0 else 0

    def write_one(image_id: str, probs: np.ndarray) -> None:
        nonlocal done
        label = probs.argmax(axis=0).astype(np.uint8)
        for png_dir in png_dirs:
            # the PNGs first: the pred.h5 entry is what marks the image done for --resume
            write_palette_png(png_dir / f"{image_id}.png", label)
        arrays = {"label": label}
        if cfg.save_probs:
            arrays["prob"] = probs.astype(np.float16)
        writer.write(image_id, **arrays)
        done += 1
        if progress:
            progress(skipped + done + len(failed), total)

    def drain(keep: int) -> None:
        while len(pending) > keep:
            image_id, result = pending.popleft()
            write_one(image_id, result.result() if cfg.crf else result)

    if progress:
        progress(skipped, total)
    with torch.inference_mode():
        for batch in loader:
            good = []
            for image_id, image, error in batch:
                if error is None:
                    good.append((image_id, image))
                else:
                    failed.append((image_id, error))
                    if progress:
                        progress(skipped + done + len(failed), total)
            if not good:
                continue
            probs = predict_probs_batch(seg.model, [im for _, im in good], cfg.scales, cfg.flip, device, cfg.combine)
            for (image_id, image), p in zip(good, probs):
                pending.append((image_id, pool.submit(image, p, crf_cfg) if cfg.crf else p))
            drain(max_pending)
    drain(0)
    if progress:
        progress(total, total)
    return done, failed
