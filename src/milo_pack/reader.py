"""Opening a file: container, manifest, validation — one path for every way of reading.

``load``, ``loads``, ``inspect``, ``untrusted_types`` and ``open`` all go through
:class:`MiloFile`, which reads the zip directory and the manifest only, checks the manifest's
schema, and validates the object graph before anything is built or any section is decoded.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import warnings
from typing import IO, Any, cast

import numpy as np

from . import migrations
from .codec import SectionInfo, SectionStore
from .container import ContainerReader
from .engine import CheckContext, LoadContext, check_section_layout, validate_graph
from .errors import (
    ArrayError,
    ContainerError,
    LimitError,
    ManifestError,
    UntrustedTypeError,
    quote,
)
from .lazy import (
    DEFAULT_CACHE_BYTES,
    LazyLoadContext,
    LazySession,
    format_path,
    format_summary,
    parse_path,
    resolve_path,
    summarize,
)
from .limits import DEFAULT_LIMITS, Limits
from .manifest import FORMAT_NAME, FORMAT_VERSION, loads_json
from .registry import get_registry
from .urls import is_url, open_url

__all__ = ["MiloFile"]

_TOP_KEYS = {"format", "format_version", "writer", "metadata", "root", "sections"}


class MiloFile:
    """An open milo_pack file: the manifest is parsed and checked; sections are read on demand.

    Use :func:`milo_pack.open` to get one.  Opening reads the zip directory and the manifest
    only.  It is a context manager; closing it closes the file if it opened the file itself.

    Attributes
    ----------
    manifest : dict
        The parsed ``manifest.json`` (format, writer versions, metadata, object graph, sections).
    sections : list of SectionInfo
        The manifest's section table, checked against the archive members.
    store : SectionStore
        Reads sections on demand; ``store.bytes_read`` and ``store.chunks_read`` count what
        was fetched so far.
    closed : bool
        Whether :meth:`close` was called.
    migrations : list of milo_pack.migrations.Step
        The declared migrations the file needs under the installed scikit-learn (empty when
        it was written by the same version); a step whose description starts with
        ``REFUSED`` cannot be carried over faithfully.  Applied before validation when
        ``migrate`` is true, else only listed.
    identity : dict or None
        For a URL: what the store says identifies the object (``size``, and ``etag`` where the
        store has one).  None for other sources.
    source : binary file object
        What the container reads from (for a remote URL, a
        :class:`~milo_pack.blockfile.BlockFile` counting its ``requests`` and
        ``bytes_fetched``).
    """

    def __init__(self, source: str | os.PathLike[str] | IO[bytes] | bytes | memoryview, *,
                 limits: Limits | None = None, migrate: bool = True,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self.migrate = migrate
        self._migrated: list[migrations.Step] | None = None
        self._versions_differ = True
        self._owned = False
        self.closed = False
        self._checked: dict[frozenset[str], CheckContext] = {}
        self.identity: dict[str, Any] | None = None
        self._buffer: memoryview | None
        fileobj: IO[bytes]
        if storage_options is not None and not is_url(source):
            raise TypeError("storage_options= is only for URLs (scheme://...)")
        if is_url(source):
            fileobj, self.identity = open_url(str(source), storage_options)
            self._owned = True
            self._buffer = None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            buffer = self._buffer = memoryview(source).cast("B")
            # BytesIO shares an immutable bytes object but copies any other buffer.
            fileobj = io.BytesIO(source if type(source) is bytes else buffer)
        elif isinstance(source, (str, os.PathLike)):
            # Unbuffered: the container reads with pread (or whole, for a small file), so a
            # buffer would only be allocated and filled for nothing.
            fileobj = io.FileIO(source, "r")
            self._owned = True
            self._buffer = None
        else:
            fileobj = source
            self._buffer = None
        self._file = self.source = fileobj
        try:
            try:
                self.container = ContainerReader(
                    fileobj, max_members=self.limits.max_members,
                    max_manifest_bytes=self.limits.max_manifest_bytes,
                    data=source if type(source) is bytes else None)
            except ContainerError as exc:
                raise identify_error(fileobj, source, exc) from None
            self.manifest = loads_json(self.container.read_manifest(), self.limits)
            self.sections = self._parse_sections()
            # A dry run (nothing changes yet): what the file needs, for inspect and verify.
            # Written by the installed versions (the common case), it needs nothing: no plan,
            # and nothing to diagnose before validation.
            self._versions_differ = bool(migrations.version_pairs(self.manifest))
            self.migrations = (migrations.plan(self.manifest) if self._versions_differ
                               else [])
        except BaseException:
            self.close()
            raise
        # The store's callbacks reach the container and the mapping, never this handle: a
        # handle and its store in a reference cycle would be freed by the garbage collector
        # only, and every load would leave its handle to a collection.
        self._regions = _Regions(self.container, self._buffer)
        self.store = SectionStore(self.container.read, self.sections, self._regions.member_size,
                                  self.limits, mmap_region=self._regions.region,
                                  release_region=self._regions.release)

    # -- manifest ----------------------------------------------------------------------------
    def _parse_sections(self) -> list[SectionInfo]:
        doc = self.manifest
        if doc.keys() != _TOP_KEYS:
            raise ManifestError(
                f"manifest keys must be {sorted(_TOP_KEYS)}, got {quote(sorted(doc))}",
                "manifest.json")
        if doc["format"] != FORMAT_NAME:
            raise ManifestError(f"not a milo_pack manifest (format {quote(doc['format'])})",
                                "manifest.json")
        if doc["format_version"] != FORMAT_VERSION or type(doc["format_version"]) is not int:
            raise ManifestError(
                f"unsupported format_version {quote(doc['format_version'])} (this milo_pack "
                f"reads version {FORMAT_VERSION})", "manifest.json")
        writer = doc["writer"]
        if not isinstance(writer, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in writer.items()):
            raise ManifestError("writer must map library names to version strings",
                                "manifest.json")
        entries = doc["sections"]
        if not isinstance(entries, list):
            raise ManifestError("sections must be a list", "manifest.json")
        if len(entries) > self.limits.max_sections:
            raise LimitError(f"more than max_sections ({self.limits.max_sections}) sections",
                             "manifest.json")
        infos = [SectionInfo.from_json(e, f"sections[{i}]", self.limits)
                 for i, e in enumerate(entries)]
        total = sum(info.length * info.dtype.itemsize for info in infos)
        if total > self.limits.max_total_bytes:
            raise LimitError(
                f"sections decode to {total} bytes, over max_total_bytes "
                f"({self.limits.max_total_bytes})", "manifest.json")
        names = [m.name for m in self.container.members]
        expected = ["manifest.json"] + [SectionStore.member_name(i) for i in range(len(infos))]
        if names != expected:
            raise ContainerError(
                f"archive members do not match the manifest's {len(infos)} sections",
                "manifest.json")
        for i, info in enumerate(infos):
            size = self.container.member(SectionStore.member_name(i)).size
            if size != info.nbytes:
                raise ContainerError(
                    f"member is {size} bytes, manifest says {info.nbytes}",
                    SectionStore.member_name(i))
        return infos

    def check(self, trusted: frozenset[str] = frozenset()) -> CheckContext:
        """Validate the object graph (no section data is read); return what was found.

        The result is kept per ``trusted`` set: the manifest cannot change under an open handle,
        so ``get`` and repeated loads do not walk a large manifest again.
        """
        cached = self._checked.get(trusted)
        if cached is not None:
            return cached
        ctx = self._checked[trusted] = self._validate(trusted)
        return ctx

    def _migrate(self) -> None:
        """Apply the declared migrations once, before the first validation (see __init__)."""
        if self._migrated is not None:
            return
        steps: list[migrations.Step] = []
        if self._versions_differ:
            if self.migrate and self.migrations:
                steps = migrations.apply(self.manifest)
            migrations.diagnose(self.manifest, get_registry())
        self._migrated = steps

    def _warn_migrated(self) -> None:
        if self._migrated:
            writer = self.manifest["writer"].get("scikit-learn", "?")
            warnings.warn(migrations.warning_for(self._migrated, writer,
                                                 migrations.installed_sklearn()), stacklevel=3)

    def _validate(self, trusted: frozenset[str]) -> CheckContext:
        self._migrate()
        ctx = CheckContext(get_registry(), self.limits, self.sections, trusted,
                           writer=dict(self.manifest["writer"]))
        validate_graph(self.manifest["metadata"], ctx)
        validate_graph(self.manifest["root"], ctx)
        unreferenced = set(range(len(self.sections))) - ctx.referenced_sections
        if unreferenced and not ctx.untrusted:
            raise ManifestError(f"section {min(unreferenced)} is not referenced by any array",
                                "manifest.json")
        check_section_layout(ctx, complete=not ctx.untrusted)
        return ctx

    @property
    def manifest_digest(self) -> str:
        """``"sha256:..."`` of the manifest's bytes.  The manifest holds the digest of every
        section's chunk table, and each table the digest of every chunk, so this names the whole
        content: a file that reads with this manifest digest and no integrity error is this one.
        """
        return "sha256:" + hashlib.sha256(self.container.read_manifest()).hexdigest()

    def untrusted_types(self) -> list[tuple[str, str]]:
        """``(tag, graph path)`` for every type the file needs that is not trusted by default."""
        return list(self.check().untrusted)

    def summary(self, *, text: bool = False, max_items: int = 3,
                max_depth: int | None = None) -> dict[str, Any] | str:
        """Describe the stored object without building it or reading any section.

        Parameters
        ----------
        text : bool, default False
            Return indented text (one line per sub-object) instead of a dict tree.
        max_items : int, default 3
            Items of a list shown one by one; the rest are summed up on one line.
        max_depth : int, optional
            Stop descending below this depth.

        Returns
        -------
        dict or str
            For each sub-object: ``path`` (graph path, usable with :meth:`get`), ``type``
            (the tag), ``shape``/``dtype`` for arrays, ``length`` for lists,
            ``decoded_bytes`` (exact size of its arrays in memory) and ``stored_bytes`` (their
            share of the compressed sections, an estimate proportional to element counts),
            and ``children``.
        """
        self.check()
        tree = summarize(self.manifest["root"], self.sections, max_items=max_items,
                         max_depth=max_depth)
        return format_summary(tree) if text else tree

    # -- loading -----------------------------------------------------------------------------
    def load(self, *, trusted: Any = (), lazy: bool = False,
             cache_bytes: int | None = DEFAULT_CACHE_BYTES, mmap: bool = True) -> Any:
        """Validate everything, then build and return the object.

        Parameters
        ----------
        trusted : sequence of str
            Type tags to allow beyond the default allow-list.
        lazy : bool, default False
            Leave ensemble members (forest, bagging, boosting, voting and stacking
            ``estimators_``, HistGradientBoosting ``_predictors``) unbuilt until first used;
            see :mod:`milo_pack.lazy`.  The handle must stay open while the model is used.
        cache_bytes : int or None, default 256 MiB
            With ``lazy``: decoded bytes of members kept built.  Members built while they fit
            stay built (a model predicted repeatedly keeps what fits instead of rebuilding
            everything); past it, only the few most recently used members are kept and the
            others are rebuilt when used again.  ``0`` streams; ``None`` keeps every member
            once built.  Safe from several threads (see :mod:`milo_pack.lazy`).
        mmap : bool, default True
            Map arrays of raw sections (files written with ``level=0``) read-only from the
            file instead of copying them, so processes loading one file share its pages.
            Every mapped section's chunk digests are verified once, at load.  Compressed
            sections are always decoded.  Mapped arrays are read-only, and the file must not
            be modified while they are in use.

        Returns
        -------
        object
            The model (or value) that was saved.
        """
        ctx = self._trusted_check(trusted)
        mapped = mmap and self._mappable()
        if lazy:
            if cache_bytes is not None and (type(cache_bytes) is not int or cache_bytes < 0):
                raise ValueError("cache_bytes must be a non-negative int or None")
            session = LazySession(self, ctx, cache_bytes, mapped)
            loader: LoadContext = LazyLoadContext(get_registry(), self.store, ctx, session)
        else:
            loader = LoadContext(get_registry(), self.store, ctx, mmap=mapped)
        result = self._build(loader, self.manifest["root"], "")
        if mapped and not lazy:
            # The model is built: what it copied needs no page of the file any more, and the
            # arrays it keeps as views (KNN data...) fault theirs back in from the page cache,
            # shared with every process mapping the file.  Page faults read around the page
            # asked for, so releasing each copied array's own pages is not enough.
            self._regions.release_all()
        self._warn_migrated()
        return result

    def get(self, path: str, *, trusted: Any = (), mmap: bool = True) -> Any:
        """Build one object of the stored graph by its path, without building the rest.

        Parameters
        ----------
        path : str
            A graph path as error messages and :meth:`summary` show it, e.g.
            ``"estimators_[17]"`` or ``"steps[1][1].coef_"``; ``""`` is the root.
        trusted, mmap
            As for :meth:`load`.

        Returns
        -------
        object
            The object, built through the same validation as a full load (the whole manifest
            is validated first; the object's arrays are verified and checked as it is built).

        Raises
        ------
        KeyError
            If no object has that path.
        """
        ctx = self._trusted_check(trusted)
        loader = LoadContext(get_registry(), self.store, ctx, mmap=mmap and self._mappable())
        loader.prefetch = 0  # one object: read only its chunks
        try:
            node = resolve_path(self.manifest["root"], path, ctx.ids)
        except KeyError:
            found = self._packed_member(loader, path, ctx.ids)
            if found is None:
                raise
            return found
        return self._build(loader, node, path)

    def _packed_member(self, loader: LoadContext, path: str,
                       ids: dict[int, dict[str, Any]]) -> Any:
        """``path`` inside a packed ensemble (trees): build that member alone, or None.

        A pack has no node per member, so the path is matched against the members' own paths
        and what follows the member (``.tree_``) is looked up on the built object.
        """
        steps = parse_path(path)
        for j in range(len(steps), 0, -1):
            prefix = format_path(steps[:j])
            try:
                node = resolve_path(self.manifest["root"], prefix, ids)
            except KeyError:
                continue
            # The tag is checked a str in the condition.
            handler = (get_registry().for_tag(cast(str, node.get("$type")), loader.trusted)
                       if isinstance(node, dict) and isinstance(node.get("$type"), str) else None)
            if handler is None or handler.unpack is None:
                return None
            if self.closed:
                raise ContainerError("the file is closed")
            _, members = handler.unpack(node, loader, prefix)
            for member in members:
                inner = parse_path(member.path)
                if steps[:len(inner)] == inner:
                    obj = member.build(loader)
                    try:
                        for step in steps[len(inner):]:
                            obj = obj[step] if isinstance(step, int) else getattr(obj, step)
                    except (AttributeError, TypeError, IndexError, KeyError):
                        raise KeyError(f"no object at {path!r}") from None
                    return obj
            return None
        return None

    def read_array(self, path: str, rows: int | slice | tuple[int, int] | None = None
                   ) -> np.ndarray | np.generic:
        """Read rows of one stored array, decoding only the chunks that hold them.

        Parameters
        ----------
        path : str
            Graph path of a plain array (see :meth:`get`; a forest's tree columns are
            ``"estimators_.trees.nodes.threshold.splits"``, every tree's split rows).  For a
            member of a packed ensemble (trees stored together), the path of one of the
            member's array attributes (``"estimators_[3].tree_.threshold"``): that member is
            built from its own rows.
        rows : int, slice, (start, stop) or None
            Rows along the first axis (a slice with step 1); ``None`` reads everything.

        Returns
        -------
        numpy.ndarray or numpy scalar
            A new array of shape ``(n_rows, *shape[1:])`` (or ``shape[1:]`` for an int: a numpy
            scalar for a 1-D array).

        Raises
        ------
        milo_pack.errors.ArrayError
            ``path`` is not a plain array, or ``rows`` lies outside it.
        KeyError
            No object has that path.
        """
        ctx = self.check()
        try:
            node = resolve_path(self.manifest["root"], path, ctx.ids)
        except KeyError:
            # An array of one member of a packed ensemble (trees): build that member.
            loader = LoadContext(get_registry(), self.store, ctx)
            loader.prefetch = 0
            arr = self._packed_member(loader, path, ctx.ids)
            if arr is None:
                raise
            if not isinstance(arr, np.ndarray) or arr.ndim == 0:
                raise ArrayError("not a plain array", path) from None
            start, stop, single = _row_range(rows, arr.shape, path)
            member_rows: np.ndarray | np.generic = arr[start] if single else arr[start:stop].copy()
            return member_rows
        if not isinstance(node, dict) or node.get("$type") != "numpy.ndarray":
            raise ArrayError("not a plain array", path)
        shape = tuple(node["shape"])
        start, stop, single = _row_range(rows, shape, path)
        if "section" in node and node.get("order", "C") == "F":
            arr = self._read_f_rows(node, shape, start, stop, path)
        else:
            loader = LoadContext(get_registry(), self.store, ctx)  # no mmap: a new array
            loader.prefetch = 0
            arr = loader.array_rows(node, start, stop, path)
        result: np.ndarray | np.generic = arr[0] if single else arr
        return result

    def _read_f_rows(self, node: dict[str, Any], shape: tuple[int, ...], start: int, stop: int,
                     path: str) -> np.ndarray:
        # Fortran order stores each column's rows together: one short read per column.
        n = shape[0]
        columns = int(np.prod(shape[1:], dtype=object))
        out = np.empty((columns, stop - start), dtype=np.dtype(node["dtype"]))
        for c in range(columns):
            self.store.read(node["section"], node["start"] + c * n + start, stop - start,
                            out=out[c], where=path, prefetch=0)
        rows: np.ndarray = out.reshape(shape[1:][::-1] + (stop - start,)).T
        return rows

    def _trusted_check(self, trusted: Any) -> CheckContext:
        trusted_set = _trusted_set(trusted)
        ctx = self.check(trusted_set)
        refused = [(tag, path) for tag, path in ctx.untrusted if tag not in trusted_set]
        if refused:
            listing = "; ".join(f"{quote(tag)} at {path}" for tag, path in refused[:10])
            more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
            raise UntrustedTypeError(
                f"the file needs types that are not trusted: {listing}{more}. Pass their tags "
                "in trusted= only if you trust this file's source.",
                tags=tuple(dict.fromkeys(tag for tag, _ in refused)))
        return ctx

    def _build(self, loader: LoadContext, node: Any, path: str) -> Any:
        if self.closed:
            raise ContainerError("the file is closed")
        try:
            return loader.decode(node, path)
        except RecursionError:
            raise LimitError("object graph is too deep to build", path or "<root>") from None
        except MemoryError:
            raise LimitError("not enough memory to build the object", path or "<root>") from None

    def metadata(self, *, trusted: Any = ()) -> Any:
        """The user metadata stored with the model."""
        ctx = self.check(_trusted_set(trusted))
        return LoadContext(get_registry(), self.store, ctx).decode(self.manifest["metadata"],
                                                                   "<metadata>")

    # -- plumbing ----------------------------------------------------------------------------
    def _mappable(self) -> bool:
        return self._regions.mappable()

    def close(self) -> None:
        """Close the handle (and the file, if it opened it).  Mapped arrays stay valid."""
        self.closed = True
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        if self._owned:
            self._file.close()

    def __enter__(self) -> MiloFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None)
_WINDOW = max(64 << 10, mmap.PAGESIZE)


class _Regions:
    """Member sizes and read-only mapped regions of an open container, for its SectionStore."""

    def __init__(self, container: ContainerReader, buffer: memoryview | None) -> None:
        self.container = container
        self.buffer = buffer
        self.mmap: mmap.mmap | None = None

    def member_size(self, name: str) -> int:
        return self.container.member(name).size

    def mappable(self) -> bool:
        # Only a plain regular file (the container reads it with pread) is mapped: a wrapper
        # showing a slice of a file would have other offsets than the file descriptor.
        return self.buffer is not None or self.container._fd is not None

    def region(self, name: str, offset: int, length: int) -> memoryview | None:
        if not self.mappable():
            return None
        member = self.container.member(name)
        start = member.data_offset + offset
        if self.buffer is not None:
            return self.buffer[start:start + length].toreadonly()
        if self.mmap is None:
            try:
                # No buffer, so mappable() found a descriptor.
                fd = cast(int, self.container._fd)
                self.mmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None
        return memoryview(self.mmap)[start:start + length]

    def release_all(self) -> None:
        """Drop every mapped page from this process (see :meth:`release`)."""
        if self.mmap is not None and _DONTNEED is not None and len(self.mmap):
            try:
                self.mmap.madvise(_DONTNEED, 0, len(self.mmap))
            except (OSError, ValueError):  # pragma: no cover - a platform without it
                pass

    def release(self, name: str, offset: int, length: int) -> None:
        """``madvise(MADV_DONTNEED)`` the pages holding a member's byte range.

        The mapping is read-only and shared with the file, so a dropped page is only read again
        from the page cache if something touches it: never a change of content.  Pages at the
        range's ends go too, with the rest of their fault-around windows (small arrays are
        mostly such pages); a neighbouring array still viewing one faults it back in from the
        page cache."""
        if self.mmap is None or _DONTNEED is None or length <= 0:
            return
        start = self.container.member(name).data_offset + offset
        # Whole fault-around windows: touching one page maps the cached pages of its aligned
        # 64 KiB window (Linux's fault_around_bytes), so that is what a touch left behind.
        first = start // _WINDOW * _WINDOW
        stop = min(-(-(start + length) // _WINDOW) * _WINDOW, len(self.mmap))
        if stop > first:
            try:
                self.mmap.madvise(_DONTNEED, first, stop - first)
            except (OSError, ValueError):  # pragma: no cover - a platform without it
                pass


def _row_range(rows: Any, shape: tuple[int, ...], path: str) -> tuple[int, int, bool]:
    """``(start, stop, single)`` for a rows argument of :meth:`MiloFile.read_array`."""
    if not shape:
        if rows is not None:
            raise ArrayError("a 0-d array has no rows", path)
        return 0, 1, True
    n = shape[0]
    if rows is None:
        return 0, n, False
    if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
        i = int(rows) + n if rows < 0 else int(rows)
        if not 0 <= i < n:
            raise ArrayError(f"row {int(rows)} is out of range for {n} rows", path)
        return i, i + 1, True
    if isinstance(rows, tuple) and len(rows) == 2:
        rows = slice(*rows)
    if not isinstance(rows, slice):
        raise TypeError("rows must be an int, a slice, a (start, stop) pair or None")
    try:
        start, stop, step = rows.indices(n)
    except TypeError:
        raise TypeError("rows must be an int, a slice, a (start, stop) pair or None") from None
    if step != 1:
        raise ArrayError("rows must be a contiguous range (step 1)", path)
    return start, max(start, stop), False


def _trusted_set(trusted: Any) -> frozenset[str]:
    if isinstance(trusted, str):
        trusted = (trusted,)
    elif isinstance(trusted, (bool, int, float, bytes, dict)) or trusted is None or not hasattr(
            trusted, "__iter__"):
        raise TypeError(
            f"trusted= takes a list of type tags (strings) such as ['mypkg.MyEstimator'], not "
            f"{trusted!r}: milo_pack never trusts every type; milo_pack.untrusted_types(file) "
            "lists the tags a file needs")
    result = frozenset(trusted)
    if not all(isinstance(t, str) for t in result):
        raise TypeError("trusted= takes a list of type tags (strings), e.g. "
                        "['mypkg.MyEstimator']")
    return result


# -- first-contact errors: what the file is, when it is not a milo_pack file ------------------

_CONVERT = ("If you made it yourself, convert it once with `milo-pack convert {name} "
            "model.milo --trust-pickle` (loading a pickle runs any code it contains).")
# (magic prefix, what the file is, advice)
_MAGICS = (
    (b"\x93NUMPY", "a numpy .npy file", "Load it with numpy.load(allow_pickle=False)."),
    (b"\x1f\x8b", "a gzip-compressed file (a joblib or pickle file compressed with gzip?)",
     _CONVERT),
    *((b"\x78" + second, "a zlib-compressed file (a joblib file saved with compress=n?)",
       _CONVERT) for second in (b"\x01", b"\x5e", b"\x9c", b"\xda")),
    (b"BZh", "a bz2-compressed file (a joblib file saved with compress=('bz2', n)?)", _CONVERT),
    (b"\xfd7zXZ", "an xz-compressed file (a joblib file saved with compress=('xz', n)?)",
     _CONVERT),
    (b"\x5d\x00\x00", "an lzma-compressed file (a joblib file saved with compress=('lzma', "
     "n)?)", _CONVERT),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "milo_pack files are zip archives."),
    (b"\x04\x22\x4d\x18", "an lz4-compressed file (a joblib file?)", _CONVERT),
)


def _source_name(fileobj: Any, source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return quote(os.fspath(source), 200)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the data given"
    name = getattr(fileobj, "name", None)
    return quote(name, 200) if isinstance(name, str) else "the file object given"


def _head(fileobj: Any, size: int) -> bytes:
    try:
        fileobj.seek(0)
        data = fileobj.read(size)
    except (OSError, ValueError, AttributeError, TypeError):
        return b""
    return data if isinstance(data, bytes) else b""


def _zip_names(fileobj: Any) -> list[str]:
    """Member names of an ordinary zip archive (only to say what a refused file is)."""
    import zipfile

    try:
        fileobj.seek(0)
        with zipfile.ZipFile(fileobj) as archive:
            return archive.namelist()[:1000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError,
            NotImplementedError, UnicodeDecodeError):
        return []


def identify_error(fileobj: Any, source: Any, error: ContainerError) -> ContainerError:
    """A ContainerError saying what a refused file is and what to do, naming the file.

    Called only when the container was refused, so that a valid file pays nothing for it.
    """
    name = _source_name(fileobj, source)
    head = _head(fileobj, 64)
    reason = str(error)
    if not head:
        return ContainerError(f"{name} is empty (0 bytes): it was never written, or its copy "
                              "was cut short")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        kind = "a joblib file" if b"joblib" in _head(fileobj, 4096) else "a pickle file"
        return ContainerError(
            f"{name} is {kind}, not a milo_pack file. " + _CONVERT.format(name=name))
    if head.startswith(b"PK\x03\x04"):
        if head[30:43] == b"manifest.json":
            return ContainerError(f"{name} starts like a milo_pack file but is truncated or "
                                  f"damaged ({reason}); save the model again")
        names = _zip_names(fileobj)
        if "schema.json" in names:
            return ContainerError(
                f"{name} is a skops file, not a milo_pack file. Load it with skops.io.load "
                "(after reviewing skops.io.get_untrusted_types) and save it with "
                "milo_pack.dump")
        return ContainerError(f"{name} is a zip archive but not a milo_pack file ({reason})")
    for magic, kind, advice in _MAGICS:
        if head.startswith(magic):
            return ContainerError(f"{name} is {kind}, not a milo_pack file. "
                                  + advice.format(name=name))
    return ContainerError(f"{name} is not a milo_pack file (a milo_pack file is a zip archive "
                          f"that starts with 'PK'; this one starts with {head[:8]!r}): {reason}")
