"""milo_pack: save and load trained models safely, compactly and lazily.

>>> import milo_pack
>>> from sklearn.linear_model import LogisticRegression
>>> model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
>>> data = milo_pack.dumps(model)
>>> milo_pack.loads(data).predict([[2.5]])
array([1])

The file argument may also be given by keyword, as with joblib and skops:
``milo_pack.dump(model, file="model.milo")``, ``milo_pack.load(file="model.milo")``.
"""

from __future__ import annotations

__version__ = "0.1.0"

import copy
import os
from typing import IO, Any

from . import errors
from .errors import MigrationWarning, MiloError
from .limits import DEFAULT_LIMITS, Limits
from .manifest import FORMAT_VERSION
from .reader import MiloFile, _trusted_set
from .registry import Handler, get_registry, register
from .remote_model import RemoteModel, remote

# Registry start-up happens here, once per process, not in the first load: it imports only the
# builtins and numpy handler modules (~0.5 ms); every other family is imported on first need.
# When scikit-learn is already imported, its handler module (a few hundred microseconds) is
# loaded now too, so that a first load pays only for the classes it holds.
get_registry()
if "sklearn.base" in __import__("sys").modules:
    from .handlers import sklearn as _sklearn_handlers  # noqa: F401

__all__ = [
    "dump",
    "dumps",
    "load",
    "loads",
    "open",
    "inspect",
    "untrusted_types",
    "remote",
    "RemoteModel",
    "errors",
    "MiloError",
    "MigrationWarning",
    "MiloFile",
    "Limits",
    "DEFAULT_LIMITS",
    "Handler",
    "register",
    "FORMAT_VERSION",
    "__version__",
]

PathOrFile = str | os.PathLike[str] | IO[bytes]
"""What the file argument of :func:`dump`, :func:`load` and friends accepts."""


def dump(obj: Any, file: PathOrFile, *, level: int = 3, metadata: Any = None,
         storage_options: dict[str, Any] | None = None) -> None:
    """Save ``obj`` to ``file``.

    Parameters
    ----------
    obj : object
        A model (any scikit-learn estimator, XGBoost or LightGBM model) or any value made of
        supported types (Python and numpy values, scipy sparse matrices...).
    file : str, os.PathLike or binary file object
        Where to write.  A path is written atomically: to a temporary file in the same
        directory, renamed into place only once complete.  A URL (``s3://bucket/model.milo``,
        ``gs://``, ``memory://``, any fsspec URL; needs ``milo_pack[remote]``) is written to a
        local temporary file, then uploaded in one operation that shows the whole object or
        none (see :mod:`milo_pack.urls`).
    level : int, default 3
        zstd level (1 is fastest, up to 22); 0 stores arrays uncompressed and 64-byte aligned so
        that loading can memory-map them.
    metadata : object, optional
        Anything made of supported types, stored in the manifest as ``metadata``.
    storage_options : dict, optional
        For a URL: options of its fsspec filesystem (credentials, endpoint...).

    Raises
    ------
    milo_pack.errors.UnsupportedTypeError
        An object in the graph cannot be saved; the message names its type and path.
    """
    from .urls import dump_to_url, is_url
    from .writer import dump_to_path, write

    if is_url(file):
        dump_to_url(obj, str(file), storage_options, level=level, metadata=metadata)
    elif storage_options is not None:
        raise TypeError("storage_options= is only for URLs (scheme://...)")
    elif isinstance(file, (str, os.PathLike)):
        dump_to_path(obj, file, level=level, metadata=metadata)
    else:
        write(obj, _writable(file), level=level, metadata=metadata)


def dumps(obj: Any, *, level: int = 3, metadata: Any = None) -> bytes:
    """Save ``obj`` and return the file's bytes (see :func:`dump`)."""
    import io

    from .writer import write

    out = io.BytesIO()
    write(obj, out, level=level, metadata=metadata)
    return out.getvalue()


def open(file: PathOrFile | bytes, *, limits: Limits | None = None,  # noqa: A001
         migrate: bool = True, storage_options: dict[str, Any] | None = None) -> MiloFile:
    """Open a file: read the zip directory and manifest only; sections are read on demand.

    Parameters
    ----------
    file : str, os.PathLike, binary file object or bytes
        Any seekable source (a path, an open file, ``io.BytesIO``, an fsspec file), or a URL
        (``s3://...``, ``gs://``, ``http(s)://``, ``memory://``, any fsspec URL; needs
        ``milo_pack[remote]``), read in 1 MiB blocks fetched once each (see
        :mod:`milo_pack.blockfile`).
    limits : Limits, optional
        Resource budgets (see :class:`Limits`).
    migrate : bool, default True
        Apply the declared migrations when the file was written by another scikit-learn
        version (see :func:`load` and ``docs/COMPATIBILITY.md``); ``migrations`` lists them.
    storage_options : dict, optional
        For a URL: options of its fsspec filesystem (credentials, endpoint...).

    Returns
    -------
    MiloFile
        A context manager with ``manifest``, ``summary()``, ``untrusted_types()``,
        ``get(path)`` (one object by its graph path), ``read_array(path, rows)`` (rows of one
        array, decoding only their chunks), ``load()`` and ``load(lazy=True, cache_bytes=...)``
        (ensemble members built on first use).  Keep it open while a lazily loaded model is
        used: members are read from the same file object.

    Examples
    --------
    >>> with milo_pack.open("forest.milo") as f:               # doctest: +SKIP
    ...     print(f.summary(text=True))
    ...     tree = f.get("estimators_[17]")
    ...     model = f.load(lazy=True, cache_bytes=0)
    ...     proba = model.predict_proba(X)                    # streams through the trees
    """
    return MiloFile(_readable(file, "open", allow_bytes=True), limits=limits, migrate=migrate,
                    storage_options=storage_options)


def load(file: PathOrFile, *, trusted: Any = (), limits: Limits | None = None,
         migrate: bool = True, storage_options: dict[str, Any] | None = None) -> Any:
    """Load an object saved by :func:`dump`.

    Parameters
    ----------
    file : str, os.PathLike, binary file object or URL
        The file to read (a URL as for :func:`open`).
    trusted : sequence of str
        Type tags to allow beyond the default allow-list (see :func:`untrusted_types`).
    limits : Limits, optional
        Resource budgets.
    migrate : bool, default True
        When the file was written by another scikit-learn version, apply the declared
        migrations (renamed or removed parameters, added attributes...; see
        :mod:`milo_pack.migrations`) to the manifest before it is validated, and emit one
        :class:`MigrationWarning` listing them.  ``False`` validates the file as written.
    storage_options : dict, optional
        For a URL: options of its fsspec filesystem.

    Raises
    ------
    milo_pack.errors.VersionError
        The file was written by another scikit-learn version and holds something the
        installed one cannot carry faithfully (the message gives both versions and why).
    milo_pack.errors.MiloError
        Any problem with the file, as a typed subclass (see :mod:`milo_pack.errors`).
    """
    source = _readable(file, "load", allow_bytes=True)
    _check_trusted(trusted)
    with MiloFile(source, limits=limits, migrate=migrate,
                  storage_options=storage_options) as handle:
        return handle.load(trusted=trusted)


def loads(data: bytes, *, trusted: Any = (), limits: Limits | None = None,
          migrate: bool = True) -> Any:
    """Load an object from bytes returned by :func:`dumps` (see :func:`load`)."""
    if isinstance(data, (str, os.PathLike)):
        raise TypeError(f"loads() takes the bytes that dumps() returned, not "
                        f"{type(data).__name__}; to read a file, use load(path)")
    source = _readable(data, "loads", allow_bytes=True)
    _check_trusted(trusted)
    with MiloFile(source, limits=limits, migrate=migrate) as handle:
        return handle.load(trusted=trusted)


def inspect(file: PathOrFile | bytes, *, limits: Limits | None = None,
            storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the parsed manifest, validated, without building any object or reading any
    section.

    The object graph is validated as for a load (tags, keys, array metadata, budgets), so an
    invalid or over-budget file is refused here too.  The manifest is returned as written (the
    migrations an older file needs are listed by ``MiloFile.migrations``).
    """
    with MiloFile(_readable(file, "inspect", allow_bytes=True), limits=limits,
                  storage_options=storage_options) as handle:
        # Validation migrates an older file's manifest in place: return it as written.
        manifest = copy.deepcopy(handle.manifest) if handle.migrations else handle.manifest
        handle.check()
        return manifest


def untrusted_types(file: PathOrFile | bytes, *, limits: Limits | None = None,
                    storage_options: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """List ``(tag, path)`` for each type in the file outside the default allow-list."""
    with MiloFile(_readable(file, "untrusted_types", allow_bytes=True), limits=limits,
                  storage_options=storage_options) as handle:
        return handle.untrusted_types()


# -- argument checks: a newcomer's mistake gets a TypeError naming the argument ---------------


def _readable(file: Any, function: str, *, allow_bytes: bool) -> Any:
    if isinstance(file, (str, os.PathLike)):
        return file
    if allow_bytes and isinstance(file, (bytes, bytearray, memoryview)):
        return file
    if hasattr(file, "read") and hasattr(file, "seek"):
        if _is_text(file):
            raise TypeError(f"{function}() needs a binary file: open it with 'rb', not 'r'")
        return file
    raise TypeError(f"{function}() takes a path, a binary file object opened for reading"
                    f"{' or the bytes dumps() returned' if allow_bytes else ''}, not "
                    f"{type(file).__name__}")


def _writable(file: Any) -> Any:
    if hasattr(file, "write"):
        if _is_text(file):
            raise TypeError("dump() needs a binary file: open it with 'wb', not 'w'")
        return file
    raise TypeError(f"dump() takes a path or a binary file object opened for writing as its "
                    f"second argument, not {type(file).__name__}; to get bytes, use dumps(obj)")


def _is_text(file: Any) -> bool:
    import io

    return isinstance(file, io.TextIOBase)


def _check_trusted(trusted: Any) -> None:
    _trusted_set(trusted)
