"""The milo_pack error hierarchy.

Every failure the library reports while saving, opening, inspecting or loading a file is a
:class:`MiloError`, itself a :class:`ValueError`, so callers can catch one class.  Subclasses say
which rule was broken; messages say where (the path in the object graph, or the zip member).

Attacker-controlled strings (type tags, member names, attribute names) are passed through
:func:`quote` before they reach a message, so a crafted file cannot flood a log or inject control
characters into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .migrations import Step

__all__ = [
    "MiloError",
    "ContainerError",
    "ManifestError",
    "LimitError",
    "ArrayError",
    "UntrustedTypeError",
    "InvariantError",
    "IntegrityError",
    "ChangedError",
    "UnsupportedTypeError",
    "VersionError",
    "MigrationWarning",
    "quote",
]

_MAX_QUOTED = 80


def quote(value: object, limit: int = _MAX_QUOTED) -> str:
    """Return ``repr``-escaped, length-bounded text for ``value`` safe to put in a message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    # repr() escapes control and non-printable characters; the outer quotes are dropped.
    return repr(text)


class MiloError(ValueError):
    """Base class of every error milo_pack raises on bad input, while saving or loading.

    Parameters
    ----------
    message : str
        What was wrong.
    path : str, optional
        Where: a path in the object graph (``steps[1][1].estimators_[3].tree_``) or a zip member.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.message = message
        self.path = path
        if path:
            message = f"{message} (at {path})"
        super().__init__(message)


class ContainerError(MiloError):
    """The zip container is not one milo_pack writes (layout, names, headers, sizes)."""


class ManifestError(MiloError):
    """The manifest is not valid JSON or does not follow the schema."""


class LimitError(MiloError):
    """A declared or actual size exceeds a resource budget (see :class:`milo_pack.Limits`)."""


class ArrayError(MiloError):
    """Array metadata or data is invalid (dtype, shape, byte counts, zstd frames, filters)."""


class UntrustedTypeError(MiloError):
    """The file needs a type that is neither allow-listed nor passed in ``trusted=``."""

    def __init__(self, message: str, path: str | None = None, tags: tuple[str, ...] = ()) -> None:
        super().__init__(message, path)
        self.tags = tags


class InvariantError(MiloError):
    """A model structure is inconsistent (tree children, feature indices, sparse indices...)."""


class IntegrityError(MiloError):
    """Section bytes do not match their digest: the file is corrupt or was edited."""


class ChangedError(IntegrityError):
    """The stored object a :func:`milo_pack.remote` handle names is not the one it was made
    for (its ETag or manifest digest differs): it was replaced since."""


class UnsupportedTypeError(MiloError, TypeError):
    """``dump`` met an object it cannot represent without executable payloads."""


class VersionError(MiloError):
    """The file was written by other library versions and cannot be carried over faithfully.

    Raised when a declared migration refuses (the old value has no equivalent in the installed
    version, e.g. ``AdaBoostClassifier(algorithm="SAMME.R")``), or when a file names parameters
    the installed version does not have and no migration is declared.  The message names the
    writer's and the reader's versions; ``writer`` and ``reader`` hold them.
    """

    def __init__(self, message: str, path: str | None = None, *, writer: str | None = None,
                 reader: str | None = None) -> None:
        super().__init__(message, path)
        self.writer = writer
        self.reader = reader


class MigrationWarning(UserWarning):
    """A file written by another scikit-learn version was migrated while loading.

    One warning per load; its message lists every transform with its graph path, and
    ``steps`` holds them as :class:`milo_pack.migrations.Step` objects.  Transforms marked
    "approximate" derive a value the old file did not store; see ``docs/COMPATIBILITY.md``.
    """

    def __init__(self, message: str, steps: tuple[Step, ...] = ()) -> None:
        super().__init__(message)
        self.steps = steps
