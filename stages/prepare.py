"""``prepare``: PASCAL VOC 2012 + SBD, or MS-COCO 2014, from their archives into the layout
``--dataset voc`` / ``--dataset coco`` read (and ``make voc`` / ``make coco`` use), checked.

Archives are found under their official names in ``archives`` (default: ``root``) or downloaded
there with ``download``. Checksums: an archive is checked against the MD5 given for it
(``md5``), else against the official MD5 where one is published (VOC 2012 and SBD, as
torchvision ships them; COCO publishes none), unless ``verify`` is off. Only when both VOC
archives matched their official MD5 are the split counts also required to be the official
1,464 / 1,449 / 10,582. The details of each dataset are in ``core.datasets.prepare_voc`` and
``prepare_coco``; the unpacking rules (resumable, no member outside the destination) in
``core.datasets.archives``.

Work in progress lives in ``<root>/.dgcn-prepare/<dataset>/``: archives unpack there and their
folders are moved into place (renames) only when whole, so an interrupted run is continued by
running it again; the folder is removed at the end. Run on a finished tree, it only checks it
and prints the counts. A finished VOC2012 folder keeps one small file, ``.dgcn-prepare.json``,
which remembers whether its archives were the official ones (and so whether the official counts
apply on later checks).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .core.checks import OptionError
from .core.datasets import archives as arc
from .core.datasets import prepare_coco as pc
from .core.datasets import prepare_voc as pv
from .core.datasets.coco import ANNOTATIONS_DIR, annotation_file
from .core.io.files import write_json_atomic
from .core.stage import Progress, StageResult

STAGING = ".dgcn-prepare"
RECORD = ".dgcn-prepare.json"  # in a finished VOC2012 folder: whether its archives were the official ones
DATASET_ARCHIVES = {"voc": (pv.VOC_TAR, pv.SBD_TGZ), "coco": pc.ARCHIVES}


@dataclass(frozen=True)
class PrepareConfig:
    dataset: str  # "voc" or "coco"
    root: Path  # VOC: gets VOCdevkit/VOC2012/ (or is an existing VOC2012 folder); COCO: the data root
    archives: Optional[Path] = None  # where the archives are (or are downloaded to); default root
    download: bool = False
    verify: bool = True  # False: no MD5 at all (archive damage is still found while unpacking)
    md5: tuple[tuple[str, str], ...] = ()  # (archive file name, expected MD5) pairs, over the official value
    cache_masks: bool = False  # COCO: rasterise every mask into the cache now
    cache_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_ARCHIVES:
            raise OptionError(f"prepare knows the datasets {', '.join(DATASET_ARCHIVES)}, not {self.dataset!r}")
        names = [s.name for s in DATASET_ARCHIVES[self.dataset]]
        seen = set()
        for name, value in self.md5:
            if name not in names:
                raise OptionError(f"--md5 {name}=...: {self.dataset} archives are {', '.join(names)}")
            if not arc.is_md5(value.lower()):
                raise OptionError(f"--md5 {name}={value}: an MD5 is 32 hexadecimal digits")
            if name in seen:
                raise OptionError(f"--md5 {name} given twice")
            seen.add(name)
        if self.md5 and not self.verify:
            raise OptionError("--md5 and --no-verify contradict each other: give one")
        if self.cache_masks and self.dataset != "coco":
            raise OptionError("--cache-masks is for COCO (VOC masks are PNG files already)")

    @property
    def archive_dir(self) -> Path:
        return self.archives if self.archives is not None else self.root

    def expected_md5(self, spec: arc.ArchiveSpec) -> tuple[Optional[str], str]:
        """(MD5 to check ``spec`` against or None, where that value comes from)."""
        given = dict(self.md5).get(spec.name)
        if not self.verify:
            return None, "not verified (--no-verify)"
        if given is not None:
            return given.lower(), "MD5 given with --md5"
        if spec.md5 is not None:
            return spec.md5, "official MD5"
        return None, "no published MD5"


def run(cfg: PrepareConfig, progress: Optional[Progress] = None) -> StageResult:
    report = progress if progress is not None else (lambda *a, **k: None)
    staging = cfg.root / STAGING / cfg.dataset
    if cfg.dataset == "voc":
        return _run_voc(cfg, staging, report)
    return _run_coco(cfg, staging, report)


# -- shared steps ---------------------------------------------------------------------------


def _locate_all(cfg: PrepareConfig, specs: list[arc.ArchiveSpec]) -> dict[str, Path]:
    """Every needed archive's path; all missing ones named in one line before any work starts."""
    folder = cfg.archive_dir
    missing = [s for s in specs if not (folder / s.name).is_file()]
    if missing and not cfg.download:
        what = ", ".join(f"{s.name} ({s.what})" for s in missing)
        raise arc.ArchiveError(
            f"not found in {folder}: {what}; put them there, point --archives at the folder holding them, "
            "or pass --download"
        )
    return {s.name: arc.locate(s, folder, cfg.download) for s in specs}


def _verify_all(cfg: PrepareConfig, specs: list[arc.ArchiveSpec], paths: dict[str, Path], staging: Path,
                report: Progress) -> dict[str, bool]:
    """Check each archive's MD5 where one is expected; returns, per archive, whether it matched
    the official value."""
    official = {}
    for spec in specs:
        expected, source = cfg.expected_md5(spec)
        if expected is not None:
            arc.verify(paths[spec.name], expected, source, staging / "md5.json", report)
        official[spec.name] = expected is not None and expected == spec.md5
    return official


def _verified(cfg: PrepareConfig, spec: arc.ArchiveSpec) -> bool:
    return cfg.expected_md5(spec)[0] is not None


def _read_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _clean_staging(staging: Path) -> None:
    """Drop the work folder (unpacked archives, markers, the MD5 memo) once the tree is whole."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # only when no other dataset's work is in progress there
    except OSError:
        pass


# -- VOC ------------------------------------------------------------------------------------


def _run_voc(cfg: PrepareConfig, staging: Path, report: Progress) -> StageResult:
    voc_dir = pv.voc_dir_of(cfg.root)
    done_before = (voc_dir / pv.SEG_LISTS / "train_aug.txt").is_file()
    if done_before:
        counts, made = pv.check_tree(voc_dir), {}
    else:
        counts, made = _build_voc(cfg, voc_dir, staging, report)
    official = _voc_official(voc_dir, staging)
    if official:
        pv.check_official_counts(voc_dir, counts)
    _clean_staging(staging)
    lines = [
        f"VOC 2012 + SBD in {voc_dir} ({'already prepared: checked only' if done_before else 'prepared now'})",
        "  " + ", ".join(f"{split} {n}" for split, n in counts.items()) + ": every listed id has its image and mask",
    ]
    if made:
        lines.append("  " + ", ".join(f"{what}: {n}" for what, n in made.items()))
    lines.append(f"  archives: {_voc_checksum_note(cfg, official, done_before)}")
    lines.append(f"use it with: --dataset voc --data-root {voc_dir}   (make voc VOC_ROOT={voc_dir})")
    return StageResult((voc_dir,), "\n".join(lines), details={"root": voc_dir, "counts": counts, "official": official})


def _voc_official(voc_dir: Path, staging: Path) -> bool:
    """Whether both archives this tree came from matched their official MD5 (in any run): from
    the tree's record once finished, from the work folder while being made."""
    record = voc_dir / RECORD
    known = _read_state(record if record.is_file() else staging / "state.json").get("official", {})
    return isinstance(known, dict) and all(known.get(s.name) is True for s in DATASET_ARCHIVES["voc"])


def _voc_checksum_note(cfg: PrepareConfig, official: bool, done_before: bool) -> str:
    if official:
        return "official (MD5 matched), so the split counts were checked against the official ones too"
    if done_before:
        return "not checked in this run (the tree was there already)"
    if not cfg.verify:
        return "not verified (--no-verify)"
    return "MD5 as given with --md5" if cfg.md5 else "MD5 checked"


def _build_voc(cfg: PrepareConfig, voc_dir: Path, staging: Path, report: Progress) -> tuple[dict[str, int], dict[str, int]]:
    sbd_done = staging / "sbd.done"
    specs = [s for s, needed in ((pv.VOC_TAR, not pv.has_voc(voc_dir)), (pv.SBD_TGZ, not sbd_done.is_file())) if needed]
    paths = _locate_all(cfg, specs)
    staging.mkdir(parents=True, exist_ok=True)
    state = _read_state(staging / "state.json")
    state["official"] = {**state.get("official", {}), **_verify_all(cfg, specs, paths, staging, report)}
    write_json_atomic(staging / "state.json", state, indent=1)

    if pv.VOC_TAR in specs:
        arc.extract_tar(paths[pv.VOC_TAR.name], staging / "voc", pv.keep_voc, report, verified=_verified(cfg, pv.VOC_TAR))
        staged = staging / "voc" / pv.VOC_PREFIX
        if not pv.has_voc(staged):
            raise arc.ArchiveError(
                f"{paths[pv.VOC_TAR.name]} holds no {pv.VOC_PREFIX}/ with SegmentationClass/ and "
                f"{pv.SEG_LISTS}/train.txt, val.txt: not the {pv.VOC_TAR.what} archive"
            )
        arc.move_into(staged, voc_dir)
    sbd_dir = staging / "sbd" / pv.SBD_PREFIX
    if pv.SBD_TGZ in specs:
        arc.extract_tar(paths[pv.SBD_TGZ.name], staging / "sbd", pv.keep_sbd, report, verified=_verified(cfg, pv.SBD_TGZ))
        if not all((sbd_dir / f).is_file() for f in ("train.txt", "val.txt")):
            raise arc.ArchiveError(
                f"{paths[pv.SBD_TGZ.name]} holds no {pv.SBD_PREFIX}/train.txt and val.txt: not the {pv.SBD_TGZ.what} archive"
            )
        sbd_done.touch()

    aug, made = pv.merge_sbd(voc_dir, sbd_dir, report)
    counts = pv.check_tree(voc_dir, aug)
    if _voc_official(voc_dir, staging):
        pv.check_official_counts(voc_dir, counts)
    write_json_atomic(voc_dir / RECORD, _read_state(staging / "state.json"), indent=1)
    # Last, once every file it lists is in place: its presence marks the tree as finished.
    pv.write_train_aug(voc_dir, aug)
    return counts, made


# -- COCO -----------------------------------------------------------------------------------


def _run_coco(cfg: PrepareConfig, staging: Path, report: Progress) -> StageResult:
    root = cfg.root
    specs = pc.needed(root)
    if specs:
        _place_coco(cfg, specs, staging, report)
    counts = {split: pc.listed_images(root, split) for split in pc.SPLITS}
    datasets = {split: pc.open_split(root, split, cfg.cache_dir) for split in pc.SPLITS}
    if cfg.cache_masks:
        for ds in datasets.values():
            pc.build_mask_cache(ds, report)
    _clean_staging(staging)
    train = datasets["train2014"]
    lines = [
        f"COCO 2014 in {root} ({'prepared now' if specs else 'already prepared: checked only'})",
        f"  train2014 {counts['train2014']} images ({len(train.ids)} with a label, used for training), "
        f"val2014 {counts['val2014']} images: every listed image is there",
        f"  archives: {_coco_checksum_note(cfg, specs)}",
        "  masks: " + (f"rasterised into {train.mask_cache_dir().parent.parent}" if cfg.cache_masks else
                       "rasterised into the cache on first use (--cache-masks builds them now)"),
        f"use it with: --dataset coco --data-root {root}   (make coco COCO_ROOT={root})",
    ]
    return StageResult((root,), "\n".join(lines), warnings=tuple(pc.count_warnings(counts)),
                       details={"root": root, "counts": counts, "official": False})


def _coco_checksum_note(cfg: PrepareConfig, specs: list[arc.ArchiveSpec]) -> str:
    if not specs:
        return "not read in this run (the tree was there already)"
    checked = "each member's CRC-32 checked as unpacked"
    if cfg.md5:
        return f"{checked}; MD5 as given with --md5 for {', '.join(n for n, _ in cfg.md5)}"
    return f"{checked} (COCO publishes no MD5)"


def _place_coco(cfg: PrepareConfig, specs: list[arc.ArchiveSpec], staging: Path, report: Progress) -> None:
    paths = _locate_all(cfg, specs)
    staging.mkdir(parents=True, exist_ok=True)
    _verify_all(cfg, specs, paths, staging, report)
    for spec in specs:
        unpacked = staging / spec.name
        arc.extract_zip(paths[spec.name], unpacked, pc.keep_for(spec), report)
        for part in pc.unpacked_parts(spec):
            if not (unpacked / part).exists() and not (cfg.root / part).exists():
                raise arc.ArchiveError(f"{paths[spec.name]} holds no {part}/: not the {spec.what} archive")
            if (unpacked / part).exists():
                arc.move_into(unpacked / part, cfg.root / part)
        shutil.rmtree(unpacked, ignore_errors=True)
    for split in pc.SPLITS:
        if not annotation_file(cfg.root, split).is_file():
            raise arc.ArchiveError(
                f"{paths.get(pc.ANNOTATIONS_ZIP.name, pc.ANNOTATIONS_ZIP.name)} holds no "
                f"{ANNOTATIONS_DIR}/instances_{split}.json: not the {pc.ANNOTATIONS_ZIP.what} archive"
            )
