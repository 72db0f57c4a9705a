"""milo_pack: save and load trained models safely, compactly and lazily.

>>> import milo_pack
>>> from sklearn.linear_model import LogisticRegression
>>> model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
>>> data = milo_pack.dumps(model)
>>> milo_pack.loads(data).predict([[2.5]])
array([1])
"""

from __future__ import annotations

__version__ = "0.1.0"

import io
import os
from typing import IO, Any

from . import errors
from .errors import MiloError
from .limits import DEFAULT_LIMITS, Limits
from .reader import MiloFile
from .registry import Handler, register
from .remote_model import RemoteModel, remote

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
    "MiloFile",
    "Limits",
    "DEFAULT_LIMITS",
    "Handler",
    "register",
    "__version__",
]

PathOrFile = str | os.PathLike | IO[bytes]


def dump(obj: Any, file: PathOrFile, /, *, level: int = 3, metadata: Any = None,
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
        write(obj, file, level=level, metadata=metadata)


def dumps(obj: Any, /, *, level: int = 3, metadata: Any = None) -> bytes:
    """Save ``obj`` and return the file's bytes (see :func:`dump`)."""
    from .writer import write

    out = io.BytesIO()
    write(obj, out, level=level, metadata=metadata)
    return out.getvalue()


def open(file: PathOrFile | bytes, /, *, limits: Limits | None = None,  # noqa: A001
         storage_options: dict[str, Any] | None = None) -> MiloFile:
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
    return MiloFile(file, limits=limits, storage_options=storage_options)


def load(file: PathOrFile, /, *, trusted: Any = (), limits: Limits | None = None,
         storage_options: dict[str, Any] | None = None) -> Any:
    """Load an object saved by :func:`dump`.

    Parameters
    ----------
    file : str, os.PathLike, binary file object or URL
        The file to read (a URL as for :func:`open`).
    trusted : sequence of str
        Type tags to allow beyond the default allow-list (see :func:`untrusted_types`).
    limits : Limits, optional
        Resource budgets.
    storage_options : dict, optional
        For a URL: options of its fsspec filesystem.

    Raises
    ------
    milo_pack.errors.MiloError
        Any problem with the file, as a typed subclass (see :mod:`milo_pack.errors`).
    """
    with MiloFile(file, limits=limits, storage_options=storage_options) as handle:
        return handle.load(trusted=trusted)


def loads(data: bytes, /, *, trusted: Any = (), limits: Limits | None = None) -> Any:
    """Load an object from bytes returned by :func:`dumps`."""
    with MiloFile(data, limits=limits) as handle:
        return handle.load(trusted=trusted)


def inspect(file: PathOrFile | bytes, /, *, limits: Limits | None = None,
            storage_options: dict[str, Any] | None = None) -> dict:
    """Return the parsed manifest without building any object or reading any section."""
    with MiloFile(file, limits=limits, storage_options=storage_options) as handle:
        return handle.manifest


def untrusted_types(file: PathOrFile | bytes, /, *, limits: Limits | None = None,
                    storage_options: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """List ``(tag, path)`` for each type in the file outside the default allow-list."""
    with MiloFile(file, limits=limits, storage_options=storage_options) as handle:
        return handle.untrusted_types()
