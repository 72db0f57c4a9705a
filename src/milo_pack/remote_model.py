"""One stored model, many machines: a small picklable handle that each process opens once.

Batch scoring on Dask, Ray or Spark usually broadcasts a pickled model: every worker receives
the whole object and holds it whole (278 MB for the README's forest).  A :class:`RemoteModel`
pickles as its URL, its options and the identity of the stored object (a few hundred bytes);
the first use in a process opens the object once (lazily by default: members are read when
used, within ``cache_bytes``) and every later use in that process, from any thread, shares that
one model.  Nothing here imports an engine: the handle is plain pickling, so Dask
(``map_partitions``, ``map_blocks``), Ray tasks and actors, Spark's ``mapInPandas``, joblib and
``multiprocessing`` all ship it unchanged.

Identity: making a handle opens the object, validates its manifest and trust (an untrusted type
is refused there, on the driver, listing what and where), and records the manifest's digest
(which names every chunk's digest, so the whole content) and the store's ETag when it has one.
A process opening the handle later refuses with :class:`~milo_pack.errors.ChangedError` if
either differs: the object was replaced since the handle was made.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .errors import ChangedError
from .lazy import DEFAULT_CACHE_BYTES
from .limits import DEFAULT_LIMITS, Limits
from .reader import MiloFile
from .urls import is_url

__all__ = ["RemoteModel", "remote", "clear", "map_batches", "DEFAULT_BATCH_ROWS"]

# Rows scored together by map_batches: ten of Spark's default Arrow batches (10,000 rows).
DEFAULT_BATCH_ROWS = 100_000


def remote(url: str | os.PathLike[str], /, *, storage_options: Mapping[str, Any] | None = None,
           lazy: bool = True, cache_bytes: int | None = DEFAULT_CACHE_BYTES,
           trusted: Any = (), limits: Limits | None = None) -> RemoteModel:
    """A picklable handle to the model stored at ``url``, opened once per process when used.

    Parameters
    ----------
    url : str or os.PathLike
        Where the model is: a URL (``s3://bucket/model.milo``, ``gs://``, ``http(s)://``,
        ``memory://``, any fsspec URL; needs ``milo_pack[remote]``) or a path that every
        process can read (a shared file system).
    storage_options : dict, optional
        Options of the URL's fsspec filesystem.  They travel with the handle (prefer
        credentials from the workers' environment to secrets in here).
    lazy : bool, default True
        Load ensemble members when used (see :mod:`milo_pack.lazy`); False loads the whole
        model in each process.
    cache_bytes : int or None, default 256 MiB
        With ``lazy``: decoded bytes of members each process keeps built (``None``: all).
    trusted : sequence of str
        Type tags to allow beyond the default allow-list.
    limits : Limits, optional
        Resource budgets for every process's open.

    Returns
    -------
    RemoteModel
        Checked now: the object is opened here once, its manifest validated and its trust
        checked (:class:`~milo_pack.errors.UntrustedTypeError` lists what is not trusted).
    """
    target = os.fspath(url)
    if not isinstance(target, str):
        raise TypeError("url must be a str or an os.PathLike of str")
    if not is_url(target):
        target = os.path.abspath(target)  # workers may run in another directory
    trusted_tags = (trusted,) if isinstance(trusted, str) else tuple(sorted(set(trusted)))
    if lazy and cache_bytes is not None and (type(cache_bytes) is not int or cache_bytes < 0):
        raise ValueError("cache_bytes must be a non-negative int or None")
    options = dict(storage_options) if storage_options is not None else None
    with MiloFile(target, limits=limits, storage_options=options) as handle:
        handle._trusted_check(trusted_tags)  # refuse untrusted types here, on the driver
        identity = dict(handle.identity or {})
        identity["manifest"] = handle.manifest_digest
    return RemoteModel(target, options, bool(lazy), cache_bytes, trusted_tags,
                       _limits_changes(limits), identity)


def _limits_changes(limits: Limits | None) -> dict[str, int]:
    if limits is None:
        return {}
    return {name: getattr(limits, name) for name in Limits.__slots__
            if getattr(limits, name) != getattr(DEFAULT_LIMITS, name)}


class _Opened:
    """This process's open model for one handle."""

    def __init__(self, handle: MiloFile | None, model: Any) -> None:
        self.handle = handle
        self.model = model


# key -> this process's model.  One per handle identity, shared by every thread; cleared in a
# forked child (open files, threads and the store's connections do not survive a fork).
_Key = tuple[Any, ...]
_OPEN: dict[_Key, _Opened] = {}
_KEY_LOCKS: dict[_Key, threading.Lock] = {}
_LOCK = threading.Lock()


def _after_fork() -> None:
    global _LOCK
    _OPEN.clear()
    _KEY_LOCKS.clear()
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def clear() -> None:
    """Close every model this process opened through handles (the next use opens again)."""
    with _LOCK:
        opened = list(_OPEN.values())
        _OPEN.clear()
    for entry in opened:
        if entry.handle is not None:
            entry.handle.close()


class RemoteModel:
    """A picklable handle to a stored model; see :func:`remote` (which makes one).

    ``predict``, ``predict_proba``, ``decision_function`` and ``transform`` call the model of
    this process (opened on first use); :attr:`model` is that model, for anything else.
    Pickling keeps only the URL, the options and the identity (under 1 kB).
    """

    __slots__ = ("url", "storage_options", "lazy", "cache_bytes", "trusted", "limits_changes",
                 "identity")

    def __init__(self, url: str, storage_options: dict[str, Any] | None, lazy: bool,
                 cache_bytes: int | None, trusted: tuple[str, ...],
                 limits_changes: dict[str, int], identity: dict[str, Any]) -> None:
        self.url = url
        self.storage_options = storage_options
        self.lazy = lazy
        self.cache_bytes = cache_bytes
        self.trusted = trusted
        self.limits_changes = limits_changes
        self.identity = identity

    # -- pickling -------------------------------------------------------------------------------
    def _state(self) -> _Key:
        return (self.url, self.storage_options, self.lazy, self.cache_bytes, self.trusted,
                self.limits_changes, self.identity)

    def __reduce__(self) -> _Key:
        return (RemoteModel, self._state())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteModel) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        ident = self.identity.get("etag") or self.identity.get("manifest", "")[:19]
        return (f"RemoteModel({self.url!r}, {ident}, lazy={self.lazy}, "
                f"cache_bytes={self.cache_bytes})")

    def __dask_tokenize__(self) -> _Key:
        return ("milo_pack.RemoteModel",) + self._key()

    def _key(self) -> _Key:
        options = repr(sorted((self.storage_options or {}).items()))
        return (self.url, options, self.lazy, self.cache_bytes, self.trusted,
                tuple(sorted(self.limits_changes.items())), self.identity.get("manifest"))

    # -- this process's model -------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The model, opened in this process on first use (once, whatever the threads)."""
        key = self._key()
        entry = _OPEN.get(key)
        if entry is None:
            entry = self._open_once(key)
        return entry.model

    def _open_once(self, key: _Key) -> _Opened:
        with _LOCK:
            lock = _KEY_LOCKS.setdefault(key, threading.Lock())
        with lock:
            entry = _OPEN.get(key)
            if entry is not None:
                return entry
            entry = self._open()
            with _LOCK:
                _OPEN[key] = entry
            return entry

    def _open(self) -> _Opened:
        limits = DEFAULT_LIMITS.replace(**self.limits_changes) if self.limits_changes else None
        handle = MiloFile(self.url, limits=limits, storage_options=self.storage_options)
        try:
            now = handle.identity or {}
            if "etag" in self.identity and now.get("etag") not in (None, self.identity["etag"]):
                raise ChangedError(
                    f"{self.url} changed since this handle was made (ETag "
                    f"{self.identity['etag']} then, {now.get('etag')} now)")
            digest = handle.manifest_digest
            if digest != self.identity.get("manifest"):
                raise ChangedError(
                    f"{self.url} changed since this handle was made (manifest "
                    f"{self.identity.get('manifest')} then, {digest} now)")
            model = handle.load(trusted=self.trusted, lazy=self.lazy,
                                cache_bytes=self.cache_bytes)
        except BaseException:
            handle.close()
            raise
        if not self.lazy:
            handle.close()
            return _Opened(None, model)
        return _Opened(handle, model)

    def opened(self) -> MiloFile | None:
        """This process's open file for the handle (None before first use, or when eager):
        ``opened().source`` counts what was fetched (``requests``, ``bytes_fetched``)."""
        entry = _OPEN.get(self._key())
        return None if entry is None else entry.handle

    def close(self) -> None:
        """Close this process's model for the handle (the next use opens it again)."""
        with _LOCK:
            entry = _OPEN.pop(self._key(), None)
        if entry is not None and entry.handle is not None:
            entry.handle.close()

    # -- inference ------------------------------------------------------------------------------
    def predict(self, X: Any, **kwargs: Any) -> Any:
        """``model.predict(X, **kwargs)`` with this process's model."""
        return self.model.predict(X, **kwargs)

    def predict_proba(self, X: Any, **kwargs: Any) -> Any:
        """``model.predict_proba(X, **kwargs)`` with this process's model."""
        return self.model.predict_proba(X, **kwargs)

    def decision_function(self, X: Any, **kwargs: Any) -> Any:
        """``model.decision_function(X, **kwargs)`` with this process's model."""
        return self.model.decision_function(X, **kwargs)

    def transform(self, X: Any, **kwargs: Any) -> Any:
        """``model.transform(X, **kwargs)`` with this process's model."""
        return self.model.transform(X, **kwargs)

    def map_batches(self, method: str, batches: Iterable[Any], *,
                    rows: int = DEFAULT_BATCH_ROWS, **kwargs: Any) -> Iterator[Any]:
        """:func:`map_batches` with this process's model (Spark's ``mapInPandas`` iterator,
        Ray's ``map_batches``, a loop over a file's row groups)."""
        return map_batches(self.model, method, batches, rows=rows, **kwargs)


def map_batches(model: Any, method: str, batches: Iterable[Any], *,
                rows: int = DEFAULT_BATCH_ROWS, **kwargs: Any) -> Iterator[Any]:
    """Yield ``getattr(model, method)(batch, **kwargs)`` for each batch, in order, scoring
    consecutive batches together, up to ``rows`` rows a call.

    A lazily loaded ensemble builds each member it uses once per call: with ``cache_bytes=0``
    (members decoded, checked and dropped again) scoring ten 10,000-row batches in one call
    builds each member once instead of ten times.  Meant for row-wise methods (``predict``,
    ``predict_proba``, ``decision_function``, ``score_samples``, ``transform`` of row-wise
    transformers): each row's result must not depend on the other rows of its call.

    Parameters
    ----------
    model : estimator
        Any model (lazy or not).
    method : str
        The method to call, e.g. ``"predict_proba"``.
    batches : iterable
        NumPy arrays or pandas DataFrames (all of one kind), rows on the first axis.
    rows : int, default 100,000
        At most this many rows per call (a batch larger than this is scored alone).  Memory:
        the batches of one call and their results are held together.
    **kwargs
        Passed to every call.

    Yields
    ------
    The result for each batch, as scoring it alone would give (row slices of the call's).
    """
    if type(rows) is not int or rows < 1:
        raise ValueError("rows must be a positive int")
    if method.startswith("_") or not callable(getattr(model, method, None)):
        raise ValueError(f"{type(model).__name__} has no method {method!r}")
    call = getattr(model, method)
    group: list[Any] = []
    held = 0
    for batch in batches:
        n = len(batch)
        if group and held + n > rows:
            yield from _score_group(call, group, kwargs)
            group, held = [], 0
        group.append(batch)
        held += n
    if group:
        yield from _score_group(call, group, kwargs)


def _score_group(call: Any, group: list[Any], kwargs: dict[str, Any]) -> Iterator[Any]:
    if len(group) == 1:
        yield call(group[0], **kwargs)
        return
    first = group[0]
    if hasattr(first, "iloc"):  # pandas: keep column names (models fitted on frames check them)
        import pandas as pd

        joined = pd.concat(group, axis=0, ignore_index=True)
    else:
        import numpy as np

        joined = np.concatenate(group, axis=0)
    out = call(joined, **kwargs)
    del joined
    start = 0
    for batch in group:
        stop = start + len(batch)
        if hasattr(out, "iloc"):  # set_output(transform="pandas"): the batch's own index
            part = out.iloc[start:stop]
            if hasattr(batch, "index"):
                part = part.set_axis(batch.index, axis=0)
        else:
            part = out[start:stop]
        yield part
        start = stop
