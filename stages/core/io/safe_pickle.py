"""Reading pickles from other tools without running their code.

Unpickling calls whatever callables a file names, so a pickle from elsewhere
could run arbitrary code. ``safe_load`` admits only plain containers, numbers,
strings and numpy arrays; any other global is refused with a one-line error.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DgcnError

# The globals numpy itself needs to rebuild arrays and scalars; nothing that
# can run user code.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # protocol-5 pickles (Python 3.14's default) rebuild arrays with _frombuffer
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("_codecs", "encode"),  # protocol-2 pickles of bytes from Python 2 go through it
}


class UnsafePickleError(DgcnError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol <= 2 (and Python 2) name builtins so
            module = "builtins"
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load: the pickle asks for {module}.{name}, "
            "which could run code; only dicts, lists, tuples, numbers, strings and numpy arrays are accepted"
        )


def safe_load(path: Path) -> Any:
    """Load a pickle file, or an ``.npy`` holding a pickled object, restrictedly."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
            fh.seek(0)
            if head == b"\x93NUMPY":
                return _load_npy(fh, str(path))
            return _RestrictedUnpickler(fh, str(path)).load()
    except UnsafePickleError:
        raise
    except FileNotFoundError:
        raise DgcnError(f"file not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise DgcnError(f"{path}: not a readable pickle ({err})") from None


def _load_npy(fh: BinaryIO, source: str) -> Any:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    _shape, _fortran, dtype = read_header(fh)
    if dtype.hasobject:
        obj = _RestrictedUnpickler(fh, source).load()
        # np.save of a dict wraps it in a 0-d object array
        if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
            return obj.item()
        return obj
    fh.seek(0)
    return np.load(io.BytesIO(fh.read()), allow_pickle=False)
