"""Dataset archives: found or downloaded, checked, and unpacked safely and resumably.

Used by ``dgcn prepare`` (``prepare_voc``, ``prepare_coco``). The rules, one place:

- An archive is looked for under its official file name in one folder; ``--download`` fetches the
  missing ones with torchvision's ``download_url`` into ``<name>.partial`` first, so an
  interrupted download never sits under the real name looking complete.
- MD5 is computed as torchvision's ``check_integrity`` does. A matching result is remembered in
  the staging folder, keyed by the file's path, size and mtime, so a rerun does not hash
  gigabytes again; a mismatch is never remembered.
- Unpacking goes member by member: each file is written under a temporary name and renamed when
  complete (for zips, after its CRC-32 matched), and a file already there with the member's
  size is skipped. An interrupted run therefore leaves only whole files and a rerun continues.
- Member names: an absolute name or one with a ``..`` component refuses the whole archive, and
  only regular files and folders are ever created (stricter than tarfile's ``"data"`` filter,
  which is applied as well): nothing can land outside the destination.
- A truncated or corrupt archive raises ``ArchiveError`` naming the archive and the member where
  reading failed.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Optional

from ..errors import DatasetError
from ..io.files import atomic_path, write_json_atomic

Progress = Callable[..., None]  # progress(done, total, info="")
Keep = Callable[[str], bool]  # which member names (posix, relative) to unpack

_HEX32 = re.compile(r"[0-9a-f]{32}")
# What a damaged tar, gzip or zip stream raises while being read.
_DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile)


class ArchiveError(DatasetError):
    """A dataset archive that is missing, fails its checksum, is damaged, or is unsafe."""


@dataclass(frozen=True)
class ArchiveSpec:
    name: str  # the official file name, which is also how it is found in the archives folder
    url: str
    md5: Optional[str]  # the published MD5; None where the publisher gives none
    what: str  # for messages: "PASCAL VOC 2012 trainval"


def is_md5(text: str) -> bool:
    return bool(_HEX32.fullmatch(text))


def _quiet(progress: Optional[Progress]) -> Progress:
    return progress if progress is not None else (lambda *a, **k: None)


# -- finding and downloading ---------------------------------------------------------------


def locate(spec: ArchiveSpec, folder: Path, download: bool) -> Path:
    """The archive's path in ``folder``; downloaded first when missing and ``download``."""
    path = folder / spec.name
    if path.is_file():
        return path
    if not download:
        raise ArchiveError(
            f"{spec.name} ({spec.what}) not found in {folder}: put it there, point --archives at "
            f"the folder holding it, or pass --download (fetches {spec.url})"
        )
    fetch(spec, folder)
    return path


def fetch(spec: ArchiveSpec, folder: Path) -> None:
    # torchvision imports torch: only pay for it when something is downloaded.
    import urllib.error

    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{spec.name}.partial"
    # download_url cannot resume and, without an MD5, would take a leftover part as complete.
    part.unlink(missing_ok=True)
    try:
        download_url(spec.url, str(folder), filename=part.name, md5=None)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise ArchiveError(
            f"cannot download {spec.url} ({reason}); download it yourself into {folder} and rerun without --download"
        ) from None
    os.replace(part, folder / spec.name)


# -- checksums -------------------------------------------------------------------------------


def md5_of(path: Path, memo: Optional[Path] = None, progress: Optional[Progress] = None) -> str:
    """The file's MD5 (hex); from ``memo`` (a JSON file) when the file is unchanged since.
    Only ``verify`` passes a memo, and only digests that matched are written to it."""
    st = path.stat()
    key = str(path.resolve())
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    known = _read_memo(memo)
    entry = known.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()) and is_md5(str(entry.get("md5"))):
        return entry["md5"]
    report = _quiet(progress)
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            done += len(chunk)
            report(done, st.st_size, f"MD5 {path.name}")
    return digest.hexdigest()


def _remember(memo: Optional[Path], path: Path, md5: str) -> None:
    if memo is None:
        return
    st = path.stat()
    known = _read_memo(memo)
    known[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}
    write_json_atomic(memo, known, indent=1)


def _read_memo(memo: Optional[Path]) -> dict:
    if memo is None or not memo.is_file():
        return {}
    try:
        data = json.loads(memo.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged memo only costs a rehash
    return data if isinstance(data, dict) else {}


def verify(path: Path, expected: str, source: str, memo: Optional[Path], progress: Optional[Progress] = None) -> None:
    """Refuse ``path`` unless its MD5 is ``expected``; ``source`` says where that value came from."""
    got = md5_of(path, memo, progress)
    if got == expected:
        # a mismatch is never remembered: a good copy put in its place (same size and time,
        # `cp -p`) is hashed again
        _remember(memo, path, got)
    else:
        size = path.stat().st_size
        raise ArchiveError(
            f"{path}: MD5 {got} is not the {source} {expected} ({size} bytes): a truncated download, a "
            "damaged copy or another file; delete it and rerun with --download, or give the right value with --md5"
        )


# -- unpacking ---------------------------------------------------------------------------------

_DATA_FILTER = getattr(tarfile, "data_filter", None)
_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def member_path(archive: Path, name: str) -> Optional[PurePosixPath]:
    """The member's relative path; None for the archive's root entry; ArchiveError when unsafe."""
    p = PurePosixPath(name)
    if name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or re.match(r"[A-Za-z]:", name):
        raise ArchiveError(
            f"{archive}: member {name!r} would be written outside the destination (an absolute name or "
            "'..'); refusing the archive"
        )
    parts = [q for q in p.parts if q != "."]
    return PurePosixPath(*parts) if parts else None


def _write_member(src: BinaryIO, target: Path) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _present(target: Path, size: int) -> bool:
    try:
        return target.stat().st_size == size
    except OSError:
        return False


def extract_tar(archive: Path, dest: Path, keep: Keep, progress: Optional[Progress] = None, *,
                verified: bool = False) -> int:
    """Unpack the kept regular files of a (possibly compressed) tar into ``dest``; returns how
    many files were written. Read as one stream, so a .tgz is decompressed once, front to back.
    ``verified``: its checksum matched, so a missing end marker is the publisher's doing and
    not a truncation."""
    report = _quiet(progress)
    total, written, name = archive.stat().st_size, 0, None
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for member in tf:
                name = member.name
                rel = member_path(archive, name)
                if rel is None or not member.isfile() or not keep(rel.as_posix()):
                    continue
                if _DATA_FILTER is not None:  # Python 3.10.12 / 3.11.4 and later; member_path
                    _DATA_FILTER(member, str(dest))  # and isfile() already hold what it checks
                target = dest / rel
                if not _present(target, member.size):
                    src = tf.extractfile(member)
                    assert src is not None  # a regular file always has data
                    _write_member(src, target)
                    written += 1
                report(raw.tell(), total, f"unpacking {archive.name}")
            # tarfile takes a plain tar cut at a member boundary for a shorter whole one; its
            # end marker (two zero blocks) tells them apart. Compressed streams check themselves.
            if not verified and not _compressed(archive) and tf.offset + 2 * tarfile.BLOCKSIZE > total:
                raise ArchiveError(
                    f"{archive}: truncated archive (it stops after {tf.offset} bytes, before the tar end "
                    "marker); delete it and download it again"
                )
    except _FILTER_ERRORS as err:
        raise ArchiveError(f"{archive}: member {name!r} refused ({err}); refusing the archive") from None
    except _DAMAGE as err:
        raise _damaged(archive, name, err) from None
    return written


def _compressed(archive: Path) -> bool:
    with open(archive, "rb") as fh:
        magic = fh.read(6)
    return magic.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))


def extract_zip(archive: Path, dest: Path, keep: Keep, progress: Optional[Progress] = None) -> int:
    """Unpack the kept files of a zip into ``dest`` (each member's CRC-32 is checked as it is
    read); returns how many files were written."""
    report = _quiet(progress)
    written, name = 0, None
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for n, info in enumerate(infos, 1):
                name = info.filename
                rel = member_path(archive, name)
                if rel is None or info.is_dir() or not keep(rel.as_posix()):
                    continue
                target = dest / rel
                if not _present(target, info.file_size):
                    with zf.open(info) as src:
                        _write_member(src, target)
                    written += 1
                report(n, len(infos), f"unpacking {archive.name}")
    except _DAMAGE as err:
        raise _damaged(archive, name, err) from None
    return written


def _damaged(archive: Path, member: Optional[str], err: BaseException) -> ArchiveError:
    where = f" at member {member!r}" if member else ""
    return ArchiveError(
        f"{archive}: damaged or truncated archive ({err}){where}; delete it and download it again"
    )


def move_into(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``; where both are folders, move what ``dest`` lacks, one entry at
    a time, so a rerun after an interruption finishes the move. Same file system: renames only."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        return
    if src.is_dir() and dest.is_dir():
        for child in sorted(src.iterdir()):
            move_into(child, dest / child.name)
        shutil.rmtree(src, ignore_errors=True)
        return
    # dest already holds this file: the one in place wins, the staged copy goes.
    if src.is_dir():
        shutil.rmtree(src, ignore_errors=True)
    else:
        src.unlink(missing_ok=True)
