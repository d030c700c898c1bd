"""Exceptions whose message is the one line a user sees.

The CLI catches ``DgcnError`` and prints ``str(err)`` without a traceback, so
every message must say what is wrong and, where possible, how to fix it.
"""


class DgcnError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class DatasetError(DgcnError):
    """A dataset folder in the wrong layout, or an unreadable image or mask."""


class ArtifactError(DgcnError):
    """An artifact file of the wrong kind, version, class list, or a damaged one."""


class CheckpointError(DgcnError):
    """A checkpoint that does not match the model or cannot be loaded safely."""


class OutputExistsError(DgcnError):
    """A stage was asked to write over an existing output without --overwrite."""


class DiskFullError(DgcnError):
    """The disk filled (or was about to) while a stage wrote its output; what was written is
    kept for ``--resume``."""
