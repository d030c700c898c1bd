"""Names that come from users' files (split names, image ids, artifact item ids).

Such a name may become part of a file name (``cams_<split>.h5``, ``png/<id>.png``, a cache
entry), so it must never be able to name a path: only letters, digits and ``_ . - + @ =``,
not starting with a dot, at most 200 characters. Everything else is refused with one line
naming the value and where it came from.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from ..errors import DgcnError

_NAME = re.compile(r"[A-Za-z0-9_+@=-][A-Za-z0-9_.+@=-]{0,199}")
ALLOWED = "letters, digits and _ . - + @ = (not starting with a dot, at most 200 characters)"


class NameError_(DgcnError, ValueError):
    """A split name or id that could name a path, or a duplicate id."""


def is_plain_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: object, what: str, source: str) -> str:
    """``value`` if it is a plain name, else a one-line error naming it and its ``source``."""
    if not is_plain_name(value):
        raise NameError_(f"{what} {value!r} from {source} is not a plain name: use only {ALLOWED}")
    return value  # type: ignore[return-value]


def check_ids(ids: Iterable[str], what: str, source: str) -> list[str]:
    """Every id a plain name and none twice; returns them as a list."""
    ids = list(ids)
    for i in ids:
        check_name(i, what, source)
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise NameError_(f"{source} lists {what} {dups[0]!r} more than once ({len(dups)} duplicated); each must appear once")
    return ids
