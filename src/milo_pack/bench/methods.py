"""The save/load methods the benchmark compares.

Each method is a small object with a ``name``, :meth:`~Method.save`, :meth:`~Method.load` and an
availability check.  Libraries are imported lazily, inside the methods, so that this module can be
imported by the measuring subprocess (see ``_child.py``) without pulling in anything the method
under test does not need.

This module deliberately imports nothing from ``milo_pack`` at module level and uses no relative
imports: the measuring subprocess loads it by file path.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
from pathlib import Path
from typing import Any

__all__ = [
    "Method",
    "PickleMethod",
    "JoblibMethod",
    "SkopsMethod",
    "MiloMethod",
    "MiloLazyMethod",
    "BASELINE",
    "JOBLIB_COMPRESSED",
    "all_methods",
    "get_method",
]

BASELINE = "pickle"
"""Name of the method every ratio is taken against."""

JOBLIB_COMPRESSED = "joblib-c3"
"""Name of the method the save-time target is taken against."""


class Method:
    """One way of writing a model to a file and reading it back.

    Attributes
    ----------
    name : str
        Short identifier used on the command line, in tables and in JSON.
    description : str
        One line saying what exactly is called.
    suffix : str
        File name suffix for files this method writes.
    is_milo : bool
        Whether the method is milo_pack (milo_pack targets apply, ``inspect`` is timed).
    file_from : str or None
        When set, this method writes nothing itself and loads the file written by the named
        method (its size and save figures are copied from there).
    """

    name: str = ""
    description: str = ""
    suffix: str = ".bin"
    is_milo: bool = False
    file_from: str | None = None

    def availability(self) -> str | None:
        """Say why the method cannot run here.

        Returns
        -------
        str or None
            ``None`` when the method is usable, else a short reason.
        """
        return None

    def save(self, obj: Any, path: Path) -> None:
        """Write ``obj`` to ``path``."""
        raise NotImplementedError

    def prepare_load(self, path: Path) -> Any:
        """Do the untimed work a user does once before loading (e.g. auditing types).

        Returns
        -------
        object
            Whatever :meth:`load` needs as its ``context`` argument.
        """
        return None

    def load(self, path: Path, context: Any = None) -> Any:
        """Read the object back from ``path``."""
        raise NotImplementedError

    def inspect(self, path: Path) -> Any:
        """Read only the file's description (milo_pack's manifest); ``None`` if not supported."""
        return None

    def __repr__(self) -> str:
        return f"<Method {self.name}>"


def _missing(module: str) -> str | None:
    """Return a reason when ``module`` cannot be imported, else ``None``."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} not installed ({exc.__class__.__name__})"
    return None


class PickleMethod(Method):
    """:func:`pickle.dump` with protocol 5 and :func:`pickle.load` (the baseline)."""

    name = BASELINE
    description = "pickle.dump(protocol=5) / pickle.load"
    suffix = ".pkl"

    def save(self, obj: Any, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=5)

    def load(self, path: Path, context: Any = None) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - files the benchmark wrote itself


class JoblibMethod(Method):
    """:func:`joblib.dump` (optionally compressed) and :func:`joblib.load`.

    Parameters
    ----------
    compress : int
        joblib's ``compress`` argument (0 = plain, 3 = its usual zlib level 3).
    """

    suffix = ".joblib"

    def __init__(self, compress: int = 0) -> None:
        self.compress = compress
        self.name = "joblib" if compress == 0 else f"joblib-c{compress}"
        self.description = (
            "joblib.dump / joblib.load"
            if compress == 0
            else f"joblib.dump(compress={compress}) / joblib.load"
        )

    def availability(self) -> str | None:
        return _missing("joblib")

    def save(self, obj: Any, path: Path) -> None:
        import joblib

        joblib.dump(obj, path, compress=self.compress)

    def load(self, path: Path, context: Any = None) -> Any:
        import joblib

        return joblib.load(path)


class SkopsMethod(Method):
    """:func:`skops.io.dump` and :func:`skops.io.load`.

    The list of types to trust is computed by :meth:`prepare_load`, outside the timed load: a
    user audits it once, then passes it to every load.
    """

    name = "skops"
    description = "skops.io.dump / skops.io.load(trusted=get_untrusted_types(file))"
    suffix = ".skops"

    def availability(self) -> str | None:
        return _missing("skops.io")

    def save(self, obj: Any, path: Path) -> None:
        import skops.io

        skops.io.dump(obj, path)

    def prepare_load(self, path: Path) -> Any:
        import skops.io

        return skops.io.get_untrusted_types(file=path)

    def load(self, path: Path, context: Any = None) -> Any:
        import skops.io

        return skops.io.load(path, trusted=context)


def _accepts(function: Any, keyword: str) -> bool:
    """Whether ``function`` takes the keyword argument ``keyword`` (``True`` if unknown)."""
    if function is None:
        return False
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    return keyword in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _milo_missing(*names: str) -> str | None:
    """Return a reason when milo_pack or one of its public functions is not there yet."""
    try:
        milo_pack = importlib.import_module("milo_pack")
    except ImportError as exc:
        return f"milo_pack not importable ({exc})"
    absent = [name for name in names if not hasattr(milo_pack, name)]
    if absent:
        return f"milo_pack.{'/'.join(absent)} not available yet"
    return None


class MiloMethod(Method):
    """``milo_pack.dump(level=...)`` and ``milo_pack.load``.

    Parameters
    ----------
    level : int
        0 = raw (uncompressed, 64-byte aligned, memory-mappable), 1 = fast zstd, 3 = default.
    name : str
        Method name.
    """

    is_milo = True
    suffix = ".milo"

    def __init__(self, level: int, name: str) -> None:
        self.level = level
        self.name = name
        self.description = f"milo_pack.dump(level={level}) / milo_pack.load"

    def availability(self) -> str | None:
        return _milo_missing("dump", "load", "inspect")

    def save(self, obj: Any, path: Path) -> None:
        import milo_pack

        milo_pack.dump(obj, path, level=self.level)

    def load(self, path: Path, context: Any = None) -> Any:
        import milo_pack

        return milo_pack.load(path)

    def inspect(self, path: Path) -> Any:
        import milo_pack

        return milo_pack.inspect(path)


class MiloLazyMethod(Method):
    """``milo_pack.open(path).load(lazy=True)`` on the file the default level wrote."""

    name = "milo_pack-lazy"
    description = "milo_pack.open(file).load(lazy=True, cache_bytes=0) on milo_pack's file"
    suffix = ".milo"
    is_milo = True
    file_from = "milo_pack"

    def availability(self) -> str | None:
        reason = _milo_missing("open", "dump", "load")
        if reason is not None:
            return reason
        import milo_pack

        handle_type = getattr(milo_pack, "MiloFile", None)
        if handle_type is not None and not _accepts(getattr(handle_type, "load", None), "lazy"):
            return "milo_pack.open(...).load() has no lazy= yet"
        return None

    def save(self, obj: Any, path: Path) -> None:
        import milo_pack

        milo_pack.dump(obj, path)

    def load(self, path: Path, context: Any = None) -> Any:
        import milo_pack

        # The handle stays open: the lazy model reads from it on first use.
        handle = milo_pack.open(path)
        options: dict[str, Any] = {"lazy": True}
        if _accepts(handle.load, "cache_bytes"):
            options["cache_bytes"] = 0
        return handle.load(**options)

    def inspect(self, path: Path) -> Any:
        """Open lazily and read the manifest (the lazy-open cost)."""
        import milo_pack

        handle = milo_pack.open(path)
        try:
            return handle.manifest
        finally:
            close = getattr(handle, "close", None)
            if callable(close):
                close()


def all_methods() -> list[Method]:
    """Return every method the benchmark knows, in table order (baseline first)."""
    return [
        PickleMethod(),
        JoblibMethod(0),
        JoblibMethod(3),
        SkopsMethod(),
        MiloMethod(3, "milo_pack"),
        MiloMethod(1, "milo_pack-fast"),
        MiloMethod(0, "milo_pack-raw"),
        MiloLazyMethod(),
    ]


def get_method(name: str) -> Method:
    """Return the method called ``name``.

    Raises
    ------
    KeyError
        If there is no such method.
    """
    for method in all_methods():
        if method.name == name:
            return method
    known = ", ".join(m.name for m in all_methods())
    raise KeyError(f"unknown method {name!r} (known: {known})")
