"""Opening a file: container, manifest, validation — one path for every way of reading.

``load``, ``loads``, ``inspect``, ``untrusted_types`` and ``open`` all go through
:class:`MiloFile`, which reads the zip directory and the manifest only, checks the manifest's
schema, and validates the object graph before anything is built or any section is decoded.
"""

from __future__ import annotations

import io
import mmap
import os
from typing import IO, Any

from .codec import SectionInfo, SectionStore
from .container import ContainerReader
from .engine import CheckContext, LoadContext, validate_graph
from .errors import ContainerError, LimitError, ManifestError, UntrustedTypeError, quote
from .limits import DEFAULT_LIMITS, Limits
from .manifest import FORMAT_NAME, FORMAT_VERSION, loads_json
from .registry import get_registry

__all__ = ["MiloFile"]

_TOP_KEYS = {"format", "format_version", "writer", "metadata", "root", "sections"}


class MiloFile:
    """An open milo_pack file: the manifest is parsed and checked; sections are read on demand.

    Use :func:`milo_pack.open` to get one.  It is a context manager; closing it closes the file
    if it opened the file itself.
    """

    def __init__(self, source: str | os.PathLike | IO[bytes] | bytes | memoryview, *,
                 limits: Limits | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self._owned = False
        self._mmap: mmap.mmap | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._buffer: memoryview | None = memoryview(source).cast("B")
            fileobj: IO[bytes] = io.BytesIO(self._buffer)
        elif isinstance(source, (str, os.PathLike)):
            fileobj = open(source, "rb")  # noqa: SIM115 - closed by close()
            self._owned = True
            self._buffer = None
        else:
            fileobj = source
            self._buffer = None
        self._file = fileobj
        try:
            self.container = ContainerReader(
                fileobj, max_members=self.limits.max_members,
                max_manifest_bytes=self.limits.max_manifest_bytes)
            self.manifest = loads_json(self.container.read_manifest(), self.limits)
            self.sections = self._parse_sections()
        except BaseException:
            self.close()
            raise
        self.store = SectionStore(self._read_member, self.sections, self._member_size,
                                  self.limits, mmap_region=self._region)

    # -- manifest ----------------------------------------------------------------------------
    def _parse_sections(self) -> list[SectionInfo]:
        doc = self.manifest
        if set(doc) != _TOP_KEYS:
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
        """Validate the object graph (no section data is read); return what was found."""
        ctx = CheckContext(get_registry(), self.limits, self.sections, trusted,
                           writer=dict(self.manifest["writer"]))
        validate_graph(self.manifest["metadata"], ctx)
        validate_graph(self.manifest["root"], ctx)
        unreferenced = set(range(len(self.sections))) - ctx.referenced_sections
        if unreferenced and not ctx.untrusted:
            raise ManifestError(f"section {min(unreferenced)} is not referenced by any array",
                                "manifest.json")
        return ctx

    def untrusted_types(self) -> list[tuple[str, str]]:
        """``(tag, graph path)`` for every type the file needs that is not trusted by default."""
        return list(self.check().untrusted)

    # -- loading -----------------------------------------------------------------------------
    def load(self, *, trusted: Any = ()) -> Any:
        """Validate everything, then build and return the object."""
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
        loader = LoadContext(get_registry(), self.store, ctx)
        try:
            return loader.decode(self.manifest["root"], "")
        except RecursionError:
            raise LimitError("object graph is too deep to build", "<root>") from None
        except MemoryError:
            raise LimitError("not enough memory to build the object", "<root>") from None

    def metadata(self, *, trusted: Any = ()) -> Any:
        """The user metadata stored with the model."""
        ctx = self.check(_trusted_set(trusted))
        return LoadContext(get_registry(), self.store, ctx).decode(self.manifest["metadata"],
                                                                   "<metadata>")

    # -- plumbing ----------------------------------------------------------------------------
    def _read_member(self, name: str, offset: int, length: int) -> bytes:
        return self.container.read(name, offset, length)

    def _member_size(self, name: str) -> int:
        return self.container.member(name).size

    def _region(self, name: str, offset: int, length: int) -> memoryview | None:
        member = self.container.member(name)
        start = member.data_offset + offset
        if self._buffer is not None:
            return self._buffer[start:start + length].toreadonly()
        if self._mmap is None:
            try:
                fileno = self._file.fileno()
            except (AttributeError, OSError, io.UnsupportedOperation):
                return None
            self._mmap = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
        return memoryview(self._mmap)[start:start + length]

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        if self._owned:
            self._file.close()

    def __enter__(self) -> MiloFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _trusted_set(trusted: Any) -> frozenset[str]:
    if isinstance(trusted, str):
        trusted = (trusted,)
    result = frozenset(trusted)
    if not all(isinstance(t, str) for t in result):
        raise TypeError("trusted must be a sequence of type tags (strings)")
    return result
