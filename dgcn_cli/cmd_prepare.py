"""``prepare voc`` and ``prepare coco``: datasets from their archives into the layout
``--dataset voc`` / ``--dataset coco`` read."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import prepare as prepare_stage

from stages.core.datasets import DataConfig

from .common import Command, fail, first_sentence, handle_errors, print_result, progress_bar
from .config_options import declared_option

prepare_app = typer.Typer(
    help="Put VOC 2012 + SBD or COCO 2014 into the layout --dataset voc / coco read, from their archives, and check it.",
    no_args_is_help=True,
)

RootOpt = typer.Option(..., "--root", help="Dataset folder to fill (created if needed); a finished one is only checked.")
ArchivesOpt = typer.Option(
    None, "--archives",
    help="Folder holding the archives under their official names (downloaded there with --download). Default: --root.",
)
DownloadOpt = typer.Option(False, "--download", help="Download the archives missing from --archives.")
Md5Opt = typer.Option(
    [], "--md5", metavar="NAME=HEX",
    help="Check archive NAME against this MD5 instead of the official one (e.g. a mirror's repack). Repeatable.",
)
CacheDirOpt = declared_option(DataConfig, "cache_dir")
NoVerifyOpt = typer.Option(
    False, "--no-verify", help="Skip MD5 checks (damaged archives are still refused while unpacking).",
)


# Help texts: one line per paragraph, since typer keeps a docstring's line breaks.
VOC_HELP = "\n\n".join((
    "PASCAL VOC 2012 with the SBD augmentation (train_aug), for --dataset voc and make voc.",
    "Reads VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz from --archives and writes ROOT/VOCdevkit/VOC2012/ "
    "(ROOT may also be an existing VOC2012 folder): VOC's own files, the SBD images VOC lacks, SegmentationClassAug/ "
    "with a mask for every train_aug and val id, and ImageSets/Segmentation/train_aug.txt = "
    "(SBD train + SBD val + VOC train) - VOC val.",
    "Masks: where VOC has its own mask, that one is kept (the official annotation, with its 255 ignore band along "
    "object boundaries; the usual SegmentationClassAug download does the same); SBD's .mat masks are converted for "
    "the other ids.",
    "Checksums: each archive's MD5 must be the official one (the values torchvision ships), or the one given with "
    "--md5 NAME=HEX; --no-verify skips the MD5. With the official archives, the split counts must also be the "
    "official 1464 train / 1449 val / 10582 train_aug.",
    "Every listed id must have its image and mask, else it stops and names the missing files. An interrupted run "
    "continues where it stopped when run again; on a finished tree it only checks and prints the counts.",
    "Example: dgcn prepare voc --root data/voc --archives ~/Downloads",
))
COCO_HELP = "\n\n".join((
    "MS-COCO 2014 for --dataset coco and make coco.",
    "Reads train2014.zip, val2014.zip and annotations_trainval2014.zip from --archives and writes ROOT/train2014/, "
    "ROOT/val2014/ and ROOT/annotations/instances_{train,val}2014.json.",
    "Checks: COCO publishes no checksums, so an MD5 is checked only where --md5 NAME=HEX gives one; every zip "
    "member's CRC-32 is checked as it is unpacked, pycocotools must load both annotation files, and every image they "
    "list must be there. Counts other than 82783 train / 40504 val images are reported as a warning.",
    "Masks are rasterised from the annotations and cached the first time they are needed; --cache-masks builds the "
    "whole cache now. An interrupted run continues when run again; on a finished tree it only checks.",
    "Example: dgcn prepare coco --root data/coco --download",
))


def parse_md5(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise typer.BadParameter(f"expected NAME=HEX such as benchmark.tgz=82b4d87c..., got {text!r}", param_hint="--md5")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def voc(
    root: Path = RootOpt,
    archives: Optional[Path] = ArchivesOpt,
    download: bool = DownloadOpt,
    md5: list[str] = Md5Opt,
    no_verify: bool = NoVerifyOpt,
) -> None:
    """PASCAL VOC 2012 with the SBD augmentation (train_aug); the full help is VOC_HELP."""
    cfg = prepare_stage.PrepareConfig(
        dataset="voc", root=root, archives=archives, download=download, verify=not no_verify, md5=parse_md5(md5),
    )
    _run(cfg, "prepare voc")


def coco(
    root: Path = RootOpt,
    archives: Optional[Path] = ArchivesOpt,
    download: bool = DownloadOpt,
    md5: list[str] = Md5Opt,
    no_verify: bool = NoVerifyOpt,
    cache_masks: bool = typer.Option(False, "--cache-masks", help="Rasterise every mask into the cache now, instead of on first use."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """MS-COCO 2014; the full help is COCO_HELP."""
    cfg = prepare_stage.PrepareConfig(
        dataset="coco", root=root, archives=archives, download=download, verify=not no_verify,
        md5=parse_md5(md5), cache_masks=cache_masks, cache_dir=cache_dir,
    )
    _run(cfg, "prepare coco")


def _run(cfg: prepare_stage.PrepareConfig, title: str) -> None:
    try:
        with progress_bar(title) as update:
            result = prepare_stage.run(cfg, progress=update)
    except KeyboardInterrupt:
        # handle_errors' own line points at --resume, which prepare does not need
        fail("interrupted; run the same command again to continue where it stopped", code=130)
    print_result(result)


prepare_app.command("voc", help=VOC_HELP, short_help=first_sentence(VOC_HELP))(handle_errors(voc))
prepare_app.command("coco", help=COCO_HELP, short_help=first_sentence(COCO_HELP))(handle_errors(coco))

COMMAND = Command("prepare", prepare_stage, prepare_app)
