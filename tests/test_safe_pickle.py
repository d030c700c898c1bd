"""Restricted unpickling: data loads, code does not run."""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from stages.core.errors import DgcnError
from stages.core.io.safe_pickle import UnsafePickleError, safe_load


class _CreatesFile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        # unpickling this would call open(target, "w"): creating a file
        return (open, (self.target, "w"))


class _RunsShell:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("cls", [_CreatesFile, _RunsShell], ids=["open", "os.system"])
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_code_in_a_pickle_is_refused(tmp_path: Path, cache_dir: Path, cls, protocol: int) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"labels": [cls(str(target))]}, protocol=protocol))
    with pytest.raises(UnsafePickleError) as err:
        safe_load(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "refusing" in msg
    assert not target.exists()


def test_evil_pickle_inside_npy_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "cls_labels.npy"
    np.save(path, np.array({"a": _CreatesFile(str(target))}, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        safe_load(path)
    assert not target.exists()


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_dict_of_arrays_and_nested_containers_load(tmp_path: Path, cache_dir: Path, protocol: int) -> None:
    data = {
        "2007_000032": np.array([1, 0, 0, 1], np.float32),
        2007000039: np.arange(12, dtype=np.int64).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
        "half": np.linspace(0, 1, 5).astype(np.float16),
        "nested": [1, (2.5, "x", [None, True]), {"k": (b"raw", 3 + 4j)}],
        "scalars": (np.float32(0.5), np.int64(7)),
        "sets": ({1, 2}, frozenset({"a"})),
        "ordered": OrderedDict(a=1, b=2),
    }
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = safe_load(path)
    assert set(got) == set(data)
    for key in ("2007_000032", 2007000039, "fortran", "half"):
        assert got[key].dtype == data[key].dtype
        np.testing.assert_array_equal(got[key], data[key])
    assert got["nested"] == data["nested"]
    assert got["scalars"] == (0.5, 7) and isinstance(got["scalars"][0], np.float32)
    assert got["sets"] == data["sets"] and got["ordered"] == data["ordered"]


def test_npy_dict_loads(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "cls_labels.npy"
    data = {2007000032: np.array([0, 1, 0], np.float32), "img_b": np.zeros(3, np.float32)}
    np.save(path, data)
    got = safe_load(path)
    assert isinstance(got, dict) and set(got) == set(data)
    np.testing.assert_array_equal(got[2007000032], data[2007000032])


def test_plain_npy_array_loads(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "a.npy"
    arr = np.arange(10, dtype=np.int16).reshape(2, 5)
    np.save(path, arr)
    got = safe_load(path)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, arr)


def test_unreadable_or_missing(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DgcnError) as err:
        safe_load(tmp_path / "absent.pkl")
    assert "not found" in str(err.value)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DgcnError) as err:
        safe_load(bad)
    assert not isinstance(err.value, UnsafePickleError) and "bad.pkl" in str(err.value)
