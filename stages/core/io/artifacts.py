"""Self-describing HDF5 artifacts passed between stages.

Layout: root attributes describe the file (kind, schema version, toolkit
version, dataset, split, class names, the full config of the run that made it,
the fingerprints of the artifacts it was made from); ``/items/<image id>`` is
a group per image holding that image's arrays, compressed, in small dtypes.

Writes go to ``<name>.partial`` and are renamed into place by ``finish()``, so
an interrupted stage never leaves a file that looks finished; an interrupted
``.partial`` is continued with ``resume=True`` (images already done are
skipped: an item counts as done once its ``complete`` attribute is set, which
is the last thing written for it).

Every file also records the ``environment`` it was made in (dgcn version and commit, Python,
torch, CUDA, device: ``provenance.environment``), outside every fingerprint. A disk that
fills ends the stage with one line before HDF5 meets it (``DiskFullError``): the free space
is checked before each item against what the items so far took, and the ``.partial`` stays
resumable.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import h5py
import numpy as np

from .. import provenance
from ..config import RUNTIME_KEYS, config_fingerprint
from ..errors import ArtifactError, DgcnError, DiskFullError, OutputExistsError
from ..units import size_text
from ..version import __version__
from . import files
from .names import check_ids, check_name

# KINDS, LABEL_KINDS and SCHEMAS re-exported: what each kind holds is declared in schemas.py
from .schemas import KINDS, LABEL_KINDS, SCHEMAS, check_item  # noqa: F401

SCHEMA_VERSION = 1

# free space kept in hand beyond the next items' estimate: HDF5 metadata (B-tree nodes, the
# root attributes finish() writes) grows in steps that no per-item average sees
DISK_RESERVE = 16 * 2**20


@dataclass
class ArtifactMeta:
    kind: str
    dataset: str
    split: str
    class_names: Sequence[str]
    config: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)  # role -> fingerprint
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown artifact kind {self.kind!r}")


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _digest(image_id: str, arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(image_id.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _count_done(partial: Path) -> str:
    try:
        with h5py.File(partial, "r") as f:
            items = f.get("items")
            return str(sum(1 for g in items.values() if g.attrs.get("complete", False))) if items is not None else "0"
    except OSError:
        return "an unreadable number of"


class ArtifactWriter:
    """Write one artifact image by image. Use as a context manager, call ``finish()``."""

    def __init__(self, path: Path, meta: ArtifactMeta, *, overwrite: bool = False, resume: bool = False,
                 expected: Optional[int] = None) -> None:
        """``expected``: how many images the finished file will hold (for messages only)."""
        self.path = Path(path)
        self.meta = meta
        self.partial = partial_path(self.path)
        self.expected = expected
        self._finished = False
        self._broken = False  # a write met a full disk: only the file id is closed
        self._done: set[str] = set()
        # bytes the items of this session took on disk, for the free-space estimate
        self._written_items = 0
        self._size_at_open = 0
        # what must match for --resume to continue (or keep) a file: the options
        # that define its content and the fingerprints of its inputs
        self.config_fingerprint = config_fingerprint({"config": meta.config, "inputs": dict(meta.inputs)}, RUNTIME_KEYS)
        if self.path.exists() and not overwrite:
            if resume:
                # the run already completed: keep it, write nothing
                self._finished = True
                self._file = None
                with h5py.File(self.path, "r") as f:
                    self._check_same_run(f, self.path)
                    self._done = set(f["items"].keys())
                return
            raise OutputExistsError(f"{self.path} exists; pass --overwrite to replace it (or --resume to keep it)")
        if self.partial.exists() and not (resume or overwrite):
            # an interrupted run's work is never thrown away without being asked to
            of = f" of {expected}" if expected is not None else ""
            raise OutputExistsError(
                f"an interrupted run left {self.partial} ({_count_done(self.partial)}{of} images done); "
                "pass --resume to continue it or --overwrite to start again"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if resume and self.partial.exists():
                self._file = self._reopen_partial()
            else:
                self._file = h5py.File(self.partial, "w")
                self._write_root_attrs()
            self._file.flush()
        except (OSError, RuntimeError) as err:
            if files.is_disk_full(err):
                raise self._disk_full(None) from None
            raise
        self._size_at_open = self._size()

    def _reopen_partial(self) -> h5py.File:
        try:
            f = h5py.File(self.partial, "a")
        except OSError as err:
            raise ArtifactError(
                f"{self.partial} is damaged ({err.__class__.__name__}); rerun with --overwrite to start again"
            ) from None
        a = f.attrs
        if a.get("kind") != self.meta.kind or json.loads(a.get("class_names", "[]")) != list(self.meta.class_names):
            f.close()
            raise ArtifactError(
                f"{self.partial} was started by a different run (kind or class list differs); rerun with --overwrite"
            )
        if (a.get("dataset"), a.get("split")) != (self.meta.dataset, self.meta.split):
            f.close()
            raise ArtifactError(
                f"{self.partial} was started for {a.get('dataset')}/{a.get('split')}, "
                f"not {self.meta.dataset}/{self.meta.split}; rerun with --overwrite"
            )
        try:
            self._check_same_run(f, self.partial)
        except ArtifactError:
            f.close()
            raise
        _record_resumed_environment(f)
        items = f.require_group("items")
        for image_id in list(items.keys()):
            if items[image_id].attrs.get("complete", False):
                self._done.add(image_id)
            else:  # half-written when the run stopped
                del items[image_id]
        return f

    def _check_same_run(self, f: h5py.File, path: Path) -> None:
        if f.attrs.get("config_fingerprint") != self.config_fingerprint:
            raise ArtifactError(
                f"{path} was made with other options or inputs; rerun with the same ones to resume, or with --overwrite"
            )

    def _write_root_attrs(self) -> None:
        m = self.meta
        a = self._file.attrs
        a["kind"] = m.kind
        a["schema_version"] = SCHEMA_VERSION
        a["toolkit_version"] = __version__
        a["dataset"] = m.dataset
        a["split"] = m.split
        a["class_names"] = _json(list(m.class_names))
        a["config"] = _json(m.config)
        a["inputs"] = _json(dict(m.inputs))
        a["extra"] = _json(dict(m.extra))
        a["config_fingerprint"] = self.config_fingerprint
        # where and with what it was made; in no fingerprint (see provenance.py)
        a["environment"] = _json(provenance.environment())
        a["complete"] = False
        self._file.require_group("items")

    @property
    def done(self) -> set[str]:
        return set(self._done)

    @property
    def finished(self) -> bool:
        return self._finished

    def write(self, image_id: str, attrs: Optional[Mapping[str, Any]] = None, **arrays: np.ndarray) -> None:
        if self._finished:
            raise ArtifactError(f"{self.path} is already complete")
        check_name(image_id, "image id", f"the items written to {self.path}")
        check_item(self.meta.kind, arrays, len(self.meta.class_names), f"{self.path} item {image_id}")
        self._check_free_space(sum(np.asarray(a).nbytes for a in arrays.values()))
        try:
            items = self._file["items"]
            if image_id in items:
                del items[image_id]
            g = items.create_group(image_id)
            # the datasets stay referenced until the flush: a write that fails while h5py frees
            # one is only printed (and the next HDF5 call may crash); in flush() it raises
            datasets = []
            for name, arr in arrays.items():
                arr = np.asarray(arr)
                kw = dict(compression="gzip", compression_opts=4, shuffle=True) if arr.size > 64 else {}
                datasets.append(g.create_dataset(name, data=arr, **kw))
            for key, val in (attrs or {}).items():
                g.attrs[key] = val
            g.attrs["digest"] = _digest(image_id, arrays)
            self._file.flush()
            # marked complete only once its data is written: a flush that fails on a full disk
            # can leave the attributes set with it on disk but not the data
            g.attrs["complete"] = True
            self._file.flush()
            del datasets
        except (OSError, RuntimeError) as err:
            # the free-space check came too late (another process filled the disk): the item
            # stays without its ``complete`` mark, so --resume drops and rewrites it
            if files.is_disk_full(err):
                self._broken = True
                raise self._disk_full(None) from None
            raise
        self._done.add(image_id)
        self._written_items += 1

    def _size(self) -> int:
        try:
            return self.partial.stat().st_size
        except OSError:
            return 0

    def _average_item(self) -> Optional[float]:
        """Bytes one item takes on disk, on average: over this session's items, or, before the
        first of them, over the items a resumed file already holds; None for a new file."""
        if self._written_items:
            return max(0, self._size() - self._size_at_open) / self._written_items
        if self._done:
            return self._size() / len(self._done)
        return None

    def _check_free_space(self, item_bytes: int) -> None:
        """Stop before the disk fills: HDF5 meeting a full disk can leave a file it cannot
        reopen, and has crashed the process. The next item needs, generously, twice the
        average so far (its uncompressed size before there is one), plus the reserve."""
        avg = self._average_item()
        need = 2 * (avg if avg is not None else item_bytes) + DISK_RESERVE
        free = files.free_space(self.partial.parent)
        if free < need:
            raise self._disk_full(free, need)

    def _disk_full(self, free: Optional[int], need: Optional[float] = None) -> DiskFullError:
        """The one line: which file, how much the rest will take, and how much is free."""
        if free is None:
            try:
                free = files.free_space(self.partial.parent)
            except OSError:
                free = None
        done = len(self._done)
        avg = self._average_item()
        left = self.expected - done if self.expected is not None else None
        if avg is not None and left is not None and left > 0:
            needs = (f"needs about {size_text(avg * left + DISK_RESERVE)} more for its {left} images left "
                     f"({size_text(avg)} each, and {size_text(DISK_RESERVE)} in hand)")
        elif need is not None:
            needs = f"needs at least {size_text(need)} more for its next image (with {size_text(DISK_RESERVE)} in hand)"
        else:
            needs = f"holds {size_text(self._size())} so far"
        has = f"{size_text(free)} free" if free is not None else "the disk is full"
        return DiskFullError(
            f"disk full: {self.partial} {needs}, {has} there; free space and rerun with --resume "
            f"(the {done} images done are kept)"
        )

    def finish(self, **attrs: Any) -> Path:
        """Seal the file; ``attrs`` are extra root attributes (JSON-encoded), e.g. what was skipped."""
        if self._finished:
            return self.path
        try:
            for key, val in attrs.items():
                self._file.attrs[key] = _json(val)
            items = self._file["items"]
            h = hashlib.sha256(self.meta.kind.encode())
            for image_id in sorted(items.keys()):
                h.update(image_id.encode())
                h.update(items[image_id].attrs["digest"].encode())
            self._file.attrs["fingerprint"] = h.hexdigest()[:16]
            self._file.attrs["count"] = len(items)
            self._file.attrs["complete"] = True
            self._file.close()
        except (OSError, RuntimeError) as err:
            if files.is_disk_full(err):
                self._broken = True
                raise self._disk_full(None) from None
            raise
        os.replace(self.partial, self.path)
        self._finished = True
        return self.path

    def close(self) -> None:
        """Close without finishing: the ``.partial`` stays for ``--resume``."""
        if self._file is not None and not self._finished:
            try:
                if self._broken:
                    # after a write failed on a full disk, h5py's File.close (which closes every
                    # object of the file first) crashed the process (h5py 3.16, HDF5 2.0);
                    # closing the file's id alone did not
                    self._file.id.close()
                else:
                    self._file.close()
            except Exception:  # noqa: BLE001 - closing a file whose disk is full can fail again
                pass

    def __enter__(self) -> "ArtifactWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class ArtifactReader:
    """Open and validate an artifact. Fails with one line saying what is wrong."""

    def __init__(
        self,
        path: Path,
        kind: Optional[str | Sequence[str]] = None,
        class_names: Optional[Sequence[str]] = None,
    ) -> None:
        self.path = Path(path)
        kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
        if not self.path.exists():
            if partial_path(self.path).exists():
                raise ArtifactError(f"{self.path} is unfinished ({partial_path(self.path).name} exists); rerun its stage with --resume")
            hint = f"; make it with `{KINDS[kinds[0]]}`" if kinds else ""
            raise ArtifactError(f"{self.path} not found{hint}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError:
            raise ArtifactError(f"{self.path} is not a readable HDF5 artifact (truncated or damaged?)") from None
        a = self._file.attrs
        try:
            self.kind = str(a["kind"])
            self.schema_version = int(a["schema_version"])
            self.class_names = tuple(json.loads(a["class_names"]))
            complete = bool(a.get("complete", False))
        except (KeyError, ValueError):
            self._file.close()
            raise ArtifactError(f"{self.path} is not a dgcn artifact (no kind/version attributes)") from None
        if kinds and self.kind not in kinds:
            self._file.close()
            raise ArtifactError(
                f"{self.path} is a '{self.kind}' artifact, expected '{' or '.join(kinds)}'; make one with `{KINDS[kinds[0]]}`"
            )
        if self.schema_version != SCHEMA_VERSION:
            self._file.close()
            raise ArtifactError(
                f"{self.path} has schema version {self.schema_version}, this dgcn reads {SCHEMA_VERSION}; "
                f"remake it with `{KINDS.get(self.kind, 'its stage')}`"
            )
        if not complete or "items" not in self._file:
            self._file.close()
            raise ArtifactError(f"{self.path} is incomplete; rerun `{KINDS.get(self.kind, 'its stage')}` with --resume")
        if class_names is not None and tuple(class_names) != self.class_names:
            self._file.close()
            raise ArtifactError(
                f"{self.path} was made for {short_class_list(self.class_names)}, "
                f"but this run uses {short_class_list(class_names)}; use the matching --dataset"
            )
        self.dataset = str(a.get("dataset", ""))
        self.split = str(a.get("split", ""))
        self.config = json.loads(a.get("config", "{}"))
        self.inputs = json.loads(a.get("inputs", "{}"))
        self.extra = json.loads(a.get("extra", "{}"))
        self.fingerprint = str(a.get("fingerprint", ""))
        self.toolkit_version = str(a.get("toolkit_version", ""))
        # None for files made before environments were recorded
        self.environment = json.loads(a["environment"]) if "environment" in a else None
        self.earlier_environments = json.loads(a.get("earlier_environments", "[]"))
        self.unreadable = json.loads(a.get("unreadable", "[]"))  # ids a stage could not read
        self._items = self._file["items"]
        try:
            check_ids(self._items.keys(), "item id", str(self.path))
        except DgcnError:
            self._file.close()
            raise
        self._verified: set[str] = set()

    @property
    def ids(self) -> list[str]:
        return sorted(self._items.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and image_id in self._items

    def get(self, image_id: str, name: str) -> np.ndarray:
        # an item already verified reads only the array asked for
        arrays = self.arrays(image_id) if image_id not in self._verified else None
        if arrays is None:
            g = self._group(image_id)
            arrays = self._read(g, image_id, [name] if name in g else [])
        if name not in arrays:
            raise ArtifactError(f"{self.path} has no '{name}' for image {image_id}")
        return arrays[name]

    def get_for_image(self, image_id: str, name: str, image_size: Sequence[int]) -> np.ndarray:
        """``get``, refusing an array whose last two dims are not the image's (H, W): every kind
        is stored at its image's resolution, so another size means it was made from other
        images with the same ids (another --data-root, another size of the demo data)."""
        arr = self.get(image_id, name)
        if tuple(arr.shape[-2:]) != tuple(image_size)[:2]:
            h, w = arr.shape[-2:]
            raise ArtifactError(
                f"{self.path}: image {image_id} is {h}x{w} there but {image_size[0]}x{image_size[1]} in "
                f"this dataset; it was made from other images (another --data-root?): remake it with "
                f"`{KINDS.get(self.kind, 'its stage')}` on these images"
            )
        return arr

    # typed accessors: the arrays by their schema names (schemas.py); with ``image_size``
    # the array must be at that (H, W), as ``get_for_image`` checks
    def label(self, image_id: str, image_size: Optional[Sequence[int]] = None) -> np.ndarray:
        return self._typed(image_id, "label", image_size)

    def cam(self, image_id: str, image_size: Optional[Sequence[int]] = None) -> tuple[np.ndarray, np.ndarray]:
        """(cams (n, H, W), their 1-based class ids (n,))."""
        return self._typed(image_id, "cam", image_size), self._typed(image_id, "classes", None)

    def saliency(self, image_id: str, image_size: Optional[Sequence[int]] = None) -> np.ndarray:
        return self._typed(image_id, "saliency", image_size)

    def _typed(self, image_id: str, name: str, image_size: Optional[Sequence[int]]) -> np.ndarray:
        if name not in SCHEMAS[self.kind].arrays:
            raise ArtifactError(f"{self.path} is a '{self.kind}' artifact: it holds no '{name}' "
                                f"({', '.join(SCHEMAS[self.kind].arrays)})")
        return self.get(image_id, name) if image_size is None else self.get_for_image(image_id, name, image_size)

    def attrs(self, image_id: str) -> dict[str, Any]:
        return dict(self._group(image_id).attrs)

    def arrays(self, image_id: str) -> dict[str, np.ndarray]:
        """Every array of one item. The first read of an item also checks it against the digest
        stored when it was written, so an item edited or damaged since fails with one line."""
        g = self._group(image_id)
        try:
            names = list(g.keys())
        except AttributeError:  # an array where the item's group belongs
            names = None
        arrays = self._read(g, image_id, names)
        if image_id not in self._verified:
            stored = g.attrs.get("digest")
            if stored is not None and _digest(image_id, arrays) != str(stored):
                raise ArtifactError(
                    f"{self.path}: image {image_id} was changed after the file was written (its digest does not match); "
                    f"remake it with `{KINDS.get(self.kind, 'its stage')}`"
                )
            self._verified.add(image_id)
        return arrays

    def _read(self, g, image_id: str, names) -> dict[str, np.ndarray]:
        try:
            if names is None:
                raise TypeError("not a group of arrays")
            return {k: g[k][()] for k in names}
        except (OSError, TypeError, AttributeError) as err:  # failed decompression, or a group where an array belongs
            raise ArtifactError(
                f"{self.path}: the data of image {image_id} cannot be read ({err.__class__.__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'damaged'}); remake it with `{KINDS.get(self.kind, 'its stage')}`"
            ) from None

    def _group(self, image_id: str):
        try:
            return self._items[image_id]
        except KeyError:
            raise ArtifactError(f"{self.path} has no image {image_id}") from None

    def require_ids(self, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self._items]
        if missing:
            unreadable = [i for i in missing if i in self.unreadable]
            why = (f"{len(unreadable)} of them could not be read when it was made" if unreadable
                   else f"it was made for {self.dataset}/{self.split}")
            raise ArtifactError(f"{self.path} lacks {len(missing)} image(s) of this split (e.g. {missing[0]}); {why}")

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "schema_version": self.schema_version,
            "toolkit_version": self.toolkit_version,
            "dataset": self.dataset,
            "split": self.split,
            "fingerprint": self.fingerprint,
            "count": len(self),
            "class_names": list(self.class_names),
            "config": self.config,
            "inputs": self.inputs,
            "extra": self.extra,
            "unreadable": self.unreadable,
            "environment": self.environment,
            "earlier_environments": self.earlier_environments,
        }

    def iter_items(self) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for image_id in self.ids:
            yield image_id, self.arrays(image_id)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ArtifactReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _record_resumed_environment(f: h5py.File) -> None:
    """A resumed file records the environment that continues it; an earlier, different one
    (another machine, another torch) moves to ``earlier_environments``, so a file written by
    two environments says so."""
    now = provenance.environment()
    a = f.attrs
    before = json.loads(a["environment"]) if "environment" in a else None
    if before == now:
        return
    if before is not None:
        earlier = json.loads(a.get("earlier_environments", "[]"))
        a["earlier_environments"] = _json([*earlier, before])
    a["environment"] = _json(now)


def short_class_list(names: Sequence[str]) -> str:
    names = list(names)
    return f"{len(names)} classes [{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}]"


def fill(
    writer: ArtifactWriter,
    ids: Sequence[str],
    compute: Callable[[str], Union[Mapping[str, np.ndarray], "Pending", Future]],
    progress: Optional[Callable[[int, int], None]] = None,
    ahead: int = 0,
) -> Path:
    """Compute and write every id not yet done (so ``--resume`` skips finished images), then finish.
    Progress reports the images already done at once, then one per image computed, so a rate
    and time left measure the work of this run, not the skipping.

    ``compute`` returns an image's arrays, or a ``Pending`` of them (anything with ``result()``:
    a future of work handed to worker processes). Up to ``ahead`` images stay pending while
    the next ones start; results are written in the ids' order, so an interrupted run loses
    only the images in flight."""
    done = writer.done
    todo = [i for i in ids if i not in done]
    count = len(ids) - len(todo)
    if progress and count:
        progress(count, len(ids))
    pending: deque = deque()

    def write_oldest() -> None:
        nonlocal count
        image_id, result = pending.popleft()
        writer.write(image_id, **(result.result() if isinstance(result, (Pending, Future)) else result))
        count += 1
        if progress:
            progress(count, len(ids))

    try:
        for image_id in todo:
            pending.append((image_id, compute(image_id)))
            while len(pending) > ahead:
                write_oldest()
        while pending:
            write_oldest()
    finally:
        for _, result in pending:  # stopped early: what was started is dropped, not waited for
            if isinstance(result, (Pending, Future)):
                result.cancel()
    return writer.finish()


class Pending:
    """A result still being computed: ``fill`` calls ``result()`` when its turn to be written
    comes. ``Pending(future, then)``: ``then`` applied to the future's result, in the caller's
    process (a worker's CRF, then the argmax here)."""

    def __init__(self, future: Future, then: Callable[[Any], Mapping[str, np.ndarray]] = lambda r: r) -> None:
        self.future, self.then = future, then

    def result(self) -> Mapping[str, np.ndarray]:
        return self.then(self.future.result())

    def cancel(self) -> bool:
        return self.future.cancel()
