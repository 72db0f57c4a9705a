"""Canonical zip container: a strict writer and a strict reader for ``.milo`` archives.

A ``.milo`` file is a zip archive (PKWARE APPNOTE 6.3) that standard tools (``unzip``, Python's
:mod:`zipfile`) open, but whose every byte is fixed by its contents: the member names, sizes, CRCs
and data determine the whole file, so the same inputs always give the same bytes, and the reader
accepts exactly the files the writer can produce and nothing else.

Byte layout
-----------
All integers are little-endian.  ``L`` is the zip64 threshold ``0xFFFFFFFF``.

1. **Members and order.**  Member 0 is ``manifest.json``; members 1..N are the sections
   ``sections/000000.bin``, ``sections/000001.bin``, ... numbered contiguously from 0 (so at most
   1,000,000 sections).  A name is exactly ``manifest.json`` or matches
   ``sections/[0-9]{6}\\.bin``; names are ASCII and compared byte for byte.
2. **Tiling.**  The file is, with nothing before, between or after:
   ``entry_0 ... entry_N  central_directory  [zip64_eocd  zip64_locator]  eocd``, where
   ``entry_i = local_header_i + data_i``.  The first local header is at offset 0; each entry is
   immediately followed by the next.
3. **Local header** (30 bytes, then the name, then the extra field)::

       signature 0x04034b50        version needed  20 (45 for a zip64 entry)
       flags 0x0800 (UTF-8 names)   method 0 (stored)
       time 0x0000, date 0x0021     (1980-01-01 00:00)
       crc32 of the data            compressed size = uncompressed size = data length
                                    (both 0xFFFFFFFF for a zip64 entry)
       name length                  extra length

   An entry is *zip64* when its data length >= L or its local header offset >= L.  Its local extra
   field then starts with a zip64 record ``id 0x0001, size 16, uncompressed size (u64),
   compressed size (u64)``.  The extra field ends with the alignment record, described next, and
   holds nothing else.
4. **Alignment.**  Every member's data starts at a file offset that is a multiple of 64.  Let
   ``p`` be the offset where the data would start without an alignment record and
   ``r = (-p) mod 64``.  If ``r == 0`` there is no alignment record.  Otherwise the record takes
   ``t = r`` bytes if ``r >= 4``, else ``t = r + 64`` bytes (a record needs a 4-byte header):
   ``id 0xD935 (u16), data size t - 4 (u16)``, then ``t - 4`` zero bytes.  (Android's zipalign
   uses the same id; here the data is all zeros.)
5. **Central directory entry** (46 bytes, then the name, then the extra field), one per member in
   member order::

       signature 0x02014b50         version made by 0x0314 (0x032D for a zip64 entry):
                                    Unix host, spec version 2.0 (4.5)
       version needed 20 (45)       flags 0x0800, method 0, time 0x0000, date 0x0021
       crc32, compressed size, uncompressed size    (as in the local header, except:)
       name length, extra length, comment length 0, disk number start 0,
       internal attributes 0, external attributes 0x81A40000 (0o100644 << 16),
       local header offset

   For a zip64 entry the sizes are 0xFFFFFFFF when the data length is >= L and the offset is
   0xFFFFFFFF when the offset is >= L; the extra field is then exactly one zip64 record
   ``id 0x0001`` holding, in this order, only the overflowing values (uncompressed size and
   compressed size, then local header offset).  Otherwise the central extra field is empty.
6. **End records.**  Zip64 end records are present exactly when the entry count >= 0xFFFF, the
   central directory size >= L or its offset >= L.  Then, right after the central directory: the
   zip64 end of central directory record (56 bytes: signature 0x06064b50, record size 44, version
   made by 45, version needed 45, disk 0, central-directory disk 0, entry count twice,
   central directory size, central directory offset; no extensible data) and the zip64 locator
   (20 bytes: signature 0x07064b50, disk 0, offset of the zip64 record, total disks 1).  Last
   comes the end of central directory record (22 bytes: signature 0x06054b50, disk 0,
   central-directory disk 0, entry count twice, central directory size and offset, comment
   length 0).  Each of its count/size/offset fields holds the true value when that value is below
   its limit (0xFFFF for counts, L otherwise) and 0xFFFF / 0xFFFFFFFF otherwise.

The writer's CRC32 makes ``unzip -t`` meaningful; the reader does not check it on every read (the
manifest's per-section digests do integrity), but :meth:`ContainerReader.verify_crc` can.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import tempfile
import threading
import zlib
from collections import namedtuple
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from .errors import ContainerError, IntegrityError, LimitError, quote

__all__ = [
    "ALIGNMENT",
    "MANIFEST_NAME",
    "MAX_SECTIONS",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_MANIFEST_BYTES",
    "section_name",
    "Member",
    "ContainerWriter",
    "SectionSink",
    "ContainerReader",
]

ALIGNMENT = 64
# Regular files up to this size are read whole when opened (see ContainerReader).
_WHOLE_FILE = 256 << 10
MANIFEST_NAME = "manifest.json"
MAX_SECTIONS = 1_000_000
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_MANIFEST_BYTES = 64 << 20

# Zip64 thresholds.  Module-level (and read at call time) so tests can lower them to exercise
# the zip64 code paths without writing 4 GiB.
_ZIP64_LIMIT = 0xFFFFFFFF
_ZIP64_COUNT_LIMIT = 0xFFFF

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_ZIP64_EOCD_SIG = 0x06064B50
_ZIP64_LOCATOR_SIG = 0x07064B50

_FLAGS = 0x0800
_FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_DATA_DESCRIPTOR = 0x0008
_METHOD_STORED = 0
_DOS_TIME = 0x0000
_DOS_DATE = 0x0021
_VERSION = 20
_VERSION_ZIP64 = 45
_HOST_UNIX = 3 << 8
_EXTERNAL_ATTR = 0o100644 << 16
_ZIP64_EXTRA_ID = 0x0001
_ALIGN_EXTRA_ID = 0xD935

_EXTRA_HEADER = struct.Struct("<HH")


class _Record:
    """A fixed-size zip record: field names, little-endian layout and canonical field values.

    The canonical values are written by :meth:`pack` unless overridden, so the writer states each
    constant once and the reader checks against the same table.
    """

    def __init__(self, name: str, layout: str, fields: str, **canonical: int) -> None:
        self.struct = struct.Struct("<" + layout)
        self.size = self.struct.size
        # A record type built at run time: its fields are attributes mypy cannot see.
        self.fields: Any = namedtuple(name, fields)  # type: ignore[misc]
        self.canonical = canonical

    def pack(self, **values: int) -> bytes:
        return self.struct.pack(*self.fields(**{**self.canonical, **values}))

    def unpack(self, buffer: bytes, offset: int = 0) -> Any:
        return self.fields._make(self.struct.unpack_from(buffer, offset))


_COMMON = dict(flags=_FLAGS, method=_METHOD_STORED, time=_DOS_TIME, date=_DOS_DATE)
_LOCAL = _Record(
    "LocalHeader",
    "IHHHHHIIIHH",
    "sig version flags method time date crc csize usize name_len extra_len",
    sig=_LOCAL_SIG,
    **_COMMON,
)
_CENTRAL = _Record(
    "CentralEntry",
    "IHHHHHHIIIHHHHHII",
    "sig made_by version flags method time date crc csize usize name_len extra_len "
    "comment_len disk internal external offset",
    sig=_CENTRAL_SIG,
    comment_len=0,
    disk=0,
    internal=0,
    external=_EXTERNAL_ATTR,
    **_COMMON,
)
_EOCD = _Record(
    "EndRecord",
    "IHHHHIIH",
    "sig disk cd_disk n_disk n_total cd_size cd_offset comment_len",
    sig=_EOCD_SIG,
    disk=0,
    cd_disk=0,
    comment_len=0,
)
_ZIP64_EOCD = _Record(
    "Zip64EndRecord",
    "IQHHIIQQQQ",
    "sig rec_size made_by version disk cd_disk n_disk n_total cd_size cd_offset",
    sig=_ZIP64_EOCD_SIG,
    rec_size=44,
    made_by=_VERSION_ZIP64,
    version=_VERSION_ZIP64,
    disk=0,
    cd_disk=0,
)
_ZIP64_LOCATOR = _Record(
    "Zip64Locator", "IIQI", "sig disk offset disks", sig=_ZIP64_LOCATOR_SIG, disk=0, disks=1
)

_NAME_RE = re.compile(r"manifest\.json|sections/[0-9]{6}\.bin", re.ASCII)
_MAX_NAME = len("sections/000000.bin")
_MIN_NAME = len(MANIFEST_NAME)
# Largest central entry: 46 fixed + longest name + zip64 extra with all three values.  Bounds
# the central directory read before it is allocated.
_MAX_CENTRAL_ENTRY = _CENTRAL.size + _MAX_NAME + _EXTRA_HEADER.size + 3 * 8
_MIN_CENTRAL_ENTRY = _CENTRAL.size + _MIN_NAME
# Largest local header: 30 fixed + longest name + zip64 extra (20) + alignment record (<= 67).
_MAX_LOCAL_HEADER = _LOCAL.size + _MAX_NAME + 20 + _EXTRA_HEADER.size + ALIGNMENT - 1

_COPY_CHUNK = 1 << 20
_CRC_CHUNK = 1 << 20


def section_name(index: int) -> str:
    """Return the member name of section ``index``.

    Parameters
    ----------
    index : int
        Zero-based section number, ``0 <= index < MAX_SECTIONS``.

    Returns
    -------
    str
        ``sections/NNNNNN.bin`` with ``index`` as six decimal digits.

    Examples
    --------
    >>> section_name(7)
    'sections/000007.bin'
    """
    if not 0 <= index < MAX_SECTIONS:
        raise LimitError(f"section index {index} outside [0, {MAX_SECTIONS})")
    return f"sections/{index:06d}.bin"


def _expected_name(position: int) -> str:
    return MANIFEST_NAME if position == 0 else section_name(position - 1)


def _capped(value: int, limit: int, sentinel: int) -> int:
    return value if value < limit else sentinel


def _is_zip64_entry(header_offset: int, size: int) -> bool:
    return size >= _ZIP64_LIMIT or header_offset >= _ZIP64_LIMIT


def _alignment_record(data_start: int) -> bytes:
    need = -data_start % ALIGNMENT
    if need == 0:
        return b""
    if need < _EXTRA_HEADER.size:
        need += ALIGNMENT
    return _EXTRA_HEADER.pack(_ALIGN_EXTRA_ID, need - 4) + bytes(need - 4)


def _local_header(name: bytes, header_offset: int, size: int, crc: int) -> bytes:
    """Return the canonical local header (fixed part, name, extra) for one member."""
    if _is_zip64_entry(header_offset, size):
        version, size_field = _VERSION_ZIP64, 0xFFFFFFFF
        extra = struct.pack("<HHQQ", _ZIP64_EXTRA_ID, 16, size, size)
    else:
        version, size_field, extra = _VERSION, size, b""
    extra += _alignment_record(header_offset + _LOCAL.size + len(name) + len(extra))
    fixed = _LOCAL.pack(
        version=version,
        crc=crc,
        csize=size_field,
        usize=size_field,
        name_len=len(name),
        extra_len=len(extra),
    )
    return fixed + name + extra


def _central_header(name: bytes, header_offset: int, size: int, crc: int) -> bytes:
    """Return the canonical central directory entry for one member."""
    values: list[int] = []
    size_field, offset_field = size, header_offset
    if size >= _ZIP64_LIMIT:
        size_field = 0xFFFFFFFF
        values += [size, size]
    if header_offset >= _ZIP64_LIMIT:
        offset_field = 0xFFFFFFFF
        values.append(header_offset)
    version = _VERSION_ZIP64 if values else _VERSION
    extra = b""
    if values:
        extra = struct.pack(f"<HH{len(values)}Q", _ZIP64_EXTRA_ID, 8 * len(values), *values)
    fixed = _CENTRAL.pack(
        made_by=_HOST_UNIX | version,
        version=version,
        crc=crc,
        csize=size_field,
        usize=size_field,
        name_len=len(name),
        extra_len=len(extra),
        offset=offset_field,
    )
    return fixed + name + extra


_LOCAL_PLAIN = (_LOCAL_SIG, _VERSION, _FLAGS, _METHOD_STORED, _DOS_TIME, _DOS_DATE)
_CENTRAL_PLAIN = (_CENTRAL_SIG, _HOST_UNIX | _VERSION, _VERSION, _FLAGS, _METHOD_STORED,
                  _DOS_TIME, _DOS_DATE)


def _plain_local_header(name: bytes, header_offset: int, size: int, crc: int) -> bytes:
    """:func:`_local_header` of an entry that is not zip64 (the caller checks), packed directly:
    the readers' fast path compares every header byte for byte against it."""
    align = _alignment_record(header_offset + _LOCAL.size + len(name))
    return _LOCAL.struct.pack(*_LOCAL_PLAIN, crc, size, size, len(name), len(align)) \
        + name + align


def _plain_central_header(name: bytes, header_offset: int, size: int, crc: int) -> bytes:
    """:func:`_central_header` of an entry that is not zip64 (the caller checks)."""
    return _CENTRAL.struct.pack(*_CENTRAL_PLAIN, crc, size, size, len(name), 0, 0, 0, 0,
                                _EXTERNAL_ATTR, header_offset) + name


def _needs_zip64_end(count: int, cd_offset: int, cd_size: int) -> bool:
    return count >= _ZIP64_COUNT_LIMIT or cd_size >= _ZIP64_LIMIT or cd_offset >= _ZIP64_LIMIT


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    """Return the canonical end records following a central directory."""
    out = b""
    if _needs_zip64_end(count, cd_offset, cd_size):
        out += _ZIP64_EOCD.pack(n_disk=count, n_total=count, cd_size=cd_size, cd_offset=cd_offset)
        out += _ZIP64_LOCATOR.pack(offset=cd_offset + cd_size)
    n = _capped(count, _ZIP64_COUNT_LIMIT, 0xFFFF)
    out += _EOCD.pack(
        n_disk=n,
        n_total=n,
        cd_size=_capped(cd_size, _ZIP64_LIMIT, 0xFFFFFFFF),
        cd_offset=_capped(cd_offset, _ZIP64_LIMIT, 0xFFFFFFFF),
    )
    return out


def _quote_bytes(raw: bytes) -> str:
    return quote(raw.decode("ascii", "backslashreplace"))


def _byte_view(data: object) -> memoryview:
    view = memoryview(data)  # type: ignore[arg-type]
    if not view.c_contiguous:
        raise TypeError("buffer must be C-contiguous")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


class SectionSink:
    """Incremental writer of one section's bytes, returned by :meth:`ContainerWriter.open_section`.

    Usable as a context manager that closes it.  Do not instantiate directly.
    """

    def __init__(self, writer: ContainerWriter, name: str) -> None:
        self._writer = writer
        self._name = name
        self._crc = 0
        self._size = 0
        self._closed = False

    @property
    def name(self) -> str:
        """The member name of this section."""
        return self._name

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (any C-contiguous bytes-like object) to the section.

        Parameters
        ----------
        data : bytes-like
            Bytes to append; numpy arrays are written as their raw memory.
        """
        if self._closed:
            raise ContainerError("write to a closed section", path=quote(self._name))
        view = _byte_view(data)
        spool = self._writer._live_spool()
        spool.write(view)
        self._crc = zlib.crc32(view, self._crc)
        self._size += view.nbytes

    def tell(self) -> int:
        """Return the number of data bytes written to this section so far."""
        return self._size

    def close(self) -> None:
        """Finish the section; further writes are refused.  Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._writer._section_closed(self._name, self._size, self._crc)

    def __enter__(self) -> SectionSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ContainerWriter:
    """Write a canonical ``.milo`` container.

    Sections are streamed first, into an anonymous spool file holding only their data; the
    manifest, known last, is passed to :meth:`finish`, which writes the whole archive to ``out``
    in order (computing every header then, once all offsets are known).  ``out`` receives only
    ``write`` calls, so it need not be seekable; the archive starts at its current position, which
    should be the start of the file.  Used as a context manager, the writer aborts (discarding the
    spool) when the block raises, and also when it ends without :meth:`finish`, which is then
    reported as an error.

    Parameters
    ----------
    out : binary file object
        Destination of the archive.
    spool_dir : str, optional
        Directory for the temporary spool file (default: the system temporary directory).  Pass
        the target's directory to keep the data on one file system.

    Examples
    --------
    >>> import io
    >>> buf = io.BytesIO()
    >>> with ContainerWriter(buf) as writer:
    ...     with writer.open_section(section_name(0)) as sink:
    ...         sink.write(b"payload")
    ...     writer.finish(b'{"format": 1}')
    >>> reader = ContainerReader(buf)
    >>> [m.name for m in reader.members]
    ['manifest.json', 'sections/000000.bin']
    >>> reader.read("sections/000000.bin")
    b'payload'
    """

    def __init__(self, out: IO[bytes], *, spool_dir: str | None = None) -> None:
        self._out = out
        self._spool_dir = spool_dir
        self._spool: io.BufferedRandom | None = None
        self._sections: list[tuple[str, int, int]] = []  # (name, size, crc) in spool order
        self._sink: SectionSink | None = None
        self._state = "open"  # -> "finished" | "aborted"

    @property
    def next_section_name(self) -> str:
        """The only name :meth:`open_section` accepts next."""
        return section_name(len(self._sections))

    def _check_open(self) -> None:
        if self._state != "open":
            raise ContainerError(f"container writer is {self._state}")

    def _live_spool(self) -> io.BufferedRandom:
        self._check_open()
        assert self._spool is not None
        return self._spool

    def open_section(self, name: str) -> SectionSink:
        """Start the next section.

        Parameters
        ----------
        name : str
            Must equal :attr:`next_section_name`: sections are numbered ``sections/000000.bin``,
            ``sections/000001.bin``, ... in the order they are opened.

        Returns
        -------
        SectionSink
            The sink to write the section's bytes to; close it before opening another.
        """
        self._check_open()
        if self._sink is not None:
            raise ContainerError("a section is already open", path=quote(self._sink.name))
        if len(self._sections) >= MAX_SECTIONS:
            raise LimitError(f"a container holds at most {MAX_SECTIONS} sections")
        expected = self.next_section_name
        if name != expected:
            raise ContainerError(f"section name must be {expected!r}", path=quote(name))
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(dir=self._spool_dir)
        self._sink = SectionSink(self, name)
        return self._sink

    def _section_closed(self, name: str, size: int, crc: int) -> None:
        self._sink = None
        if self._state == "open":
            self._sections.append((name, size, crc))

    def finish(self, manifest: bytes | bytearray | memoryview) -> None:
        """Write the archive: manifest, spooled sections, central directory, end records.

        Parameters
        ----------
        manifest : bytes-like
            The ``manifest.json`` bytes, written unchanged.
        """
        self._check_open()
        if self._sink is not None:
            raise ContainerError("finish() with a section still open", path=quote(self._sink.name))
        manifest_bytes = bytes(_byte_view(manifest))
        try:
            self._write_archive(manifest_bytes)
        except BaseException:
            self.abort()
            raise
        self._discard_spool()
        self._state = "finished"

    def _write_archive(self, manifest: bytes) -> None:
        entries = [(MANIFEST_NAME, len(manifest), zlib.crc32(manifest)), *self._sections]
        if self._spool is not None:
            self._spool.flush()
            self._spool.seek(0)
        copy_buffer = memoryview(bytearray(_COPY_CHUNK))
        offsets = []
        offset = 0
        for index, (name, size, crc) in enumerate(entries):
            header = _local_header(name.encode("ascii"), offset, size, crc)
            self._write_all(header)
            if index == 0:
                self._write_all(manifest)
            else:
                self._copy_from_spool(name, size, copy_buffer)
            offsets.append(offset)
            offset += len(header) + size
        cd_offset = offset
        pending = bytearray()  # written in ~1 MiB pieces: the directory can be tens of MB
        cd_size = 0
        for (name, size, crc), header_offset in zip(entries, offsets, strict=True):
            pending += _central_header(name.encode("ascii"), header_offset, size, crc)
            if len(pending) >= _COPY_CHUNK:
                cd_size += len(pending)
                self._write_all(pending)
                pending = bytearray()
        cd_size += len(pending)
        pending += _end_records(len(entries), cd_offset, cd_size)
        self._write_all(pending)
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()

    def _copy_from_spool(self, name: str, size: int, buffer: memoryview) -> None:
        # Sections sit back to back in the spool, in order, so reading sequentially suffices.
        assert self._spool is not None
        remaining = size
        while remaining:
            n = self._spool.readinto(buffer[: min(remaining, len(buffer))])
            if not n:
                raise ContainerError("section spool ended early", path=quote(name))
            self._write_all(buffer[:n])
            remaining -= n

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        # Raw (unbuffered) streams may write only part of the buffer; loop until all is out.
        view = memoryview(data)
        while view.nbytes:
            # typeshed says int, but raw (unbuffered) streams return None when they would block.
            n: int | None = self._out.write(view)
            if n is None:
                # None means "would block" only for raw streams; other writers that return
                # nothing (hashing sinks, simple wrappers) have taken everything.
                if isinstance(self._out, io.RawIOBase):
                    raise ContainerError("output stream would block; use a blocking file object")
                return
            view = view[n:]

    def _discard_spool(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def abort(self) -> None:
        """Discard the spooled sections; the writer can no longer be used.  Idempotent."""
        if self._state == "open":
            self._state = "aborted"
        self._sink = None
        self._discard_spool()

    def __enter__(self) -> ContainerWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "open":
            self.abort()
            if exc_type is None:
                raise ContainerError("container writer closed without finish(); output discarded")


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One archive member, as validated by :class:`ContainerReader`.

    Attributes
    ----------
    name : str
        Member name.
    header_offset : int
        File offset of its local header.
    data_offset : int
        File offset of its first data byte (a multiple of :data:`ALIGNMENT`).
    size : int
        Data length in bytes.
    crc32 : int
        CRC-32 of the data as recorded in the headers (not verified on read).
    """

    name: str
    header_offset: int
    data_offset: int
    size: int
    crc32: int


def _positional_fd(fileobj: IO[bytes], file_size: int) -> int | None:
    """Return a descriptor usable with ``os.pread`` for ``fileobj``, or None.

    Positional reads are thread-safe and leave the object's position alone, but are only safe
    when the object is a plain view of a regular file (not a wrapper showing a slice of one).
    """
    if not hasattr(os, "pread"):
        return None
    raw = fileobj.raw if isinstance(fileobj, io.BufferedReader | io.BufferedRandom) else fileobj
    if not isinstance(raw, io.FileIO):
        return None
    fd = raw.fileno()
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != file_size:
        return None
    return fd


class ContainerReader:
    """Open and validate a ``.milo`` container without reading member data.

    Reads only the end records, the central directory and each local header, and checks that the
    archive is byte for byte what :class:`ContainerWriter` writes for those members (see the
    module documentation), raising :class:`~milo_pack.errors.ContainerError` otherwise, or
    :class:`~milo_pack.errors.LimitError` when a budget is exceeded.  Member data is then read on
    demand with :meth:`read` / :meth:`readinto`; reads are safe from several threads.

    Parameters
    ----------
    fileobj : binary file object
        Seekable, readable; kept open and used for every later read (never re-opened).
    max_members : int, optional
        Largest member count accepted (manifest included); checked before the central directory
        is read.
    max_manifest_bytes : int, optional
        Largest manifest :meth:`read_manifest` accepts.
    data : bytes, optional
        The bytes ``fileobj`` reads, when it is an ``io.BytesIO`` over an immutable ``bytes``
        object: headers and members are then sliced from them.

    Attributes
    ----------
    members : list of Member
        Members in archive order; ``members[0]`` is the manifest.
    file_size : int
        Size of the archive in bytes.
    fileobj : binary file object
        The file object passed in.
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        *,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
        data: bytes | None = None,
    ) -> None:
        self.fileobj = fileobj
        self.max_members = max_members
        self.max_manifest_bytes = max_manifest_bytes
        self._lock = threading.Lock()
        # ``data``: the immutable bytes ``fileobj`` reads (an io.BytesIO over them, as loads()
        # makes), read by slicing: no lock, seek and read per header.
        self._data = data if type(data) is bytes else None
        try:
            fileobj.seek(0, os.SEEK_END)
            self.file_size = fileobj.tell()
        except (AttributeError, OSError) as exc:  # io.UnsupportedOperation is an OSError
            raise ContainerError(f"the container file object must be seekable ({exc})") from None
        self._fd = _positional_fd(fileobj, self.file_size)
        # A small regular file (a linear model, a short pipeline) is read in one call when
        # opened, and its headers and manifest are sliced from that copy instead of a read
        # each: the same checks run on the same bytes.  Section data is still read from the
        # file when used (and verified then).
        self._head: bytes | None = None
        if self._data is None and self._fd is not None and self.file_size <= _WHOLE_FILE:
            self._head = self._read_at(0, self.file_size)
        self.members: list[Member] = self._parse()
        self._by_name = {m.name: m for m in self.members}

    # -- low-level I/O ------------------------------------------------------------------------

    def _read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.file_size:
            raise ContainerError(f"read of {n} bytes at offset {offset} is outside the file")
        if self._data is not None:
            return self._data[offset:offset + n]
        if self._head is not None:
            return self._head[offset:offset + n]
        return self._read_file(offset, n)

    def _read_file(self, offset: int, n: int) -> bytes:
        chunks: list[bytes] = []
        got = 0
        if self._fd is not None:
            while got < n:
                chunk = os.pread(self._fd, n - got, offset + got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        else:
            with self._lock:
                self.fileobj.seek(offset)
                while got < n:
                    chunk = self.fileobj.read(n - got)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
        if got != n:
            raise ContainerError(
                f"unexpected end of file: read {got} of {n} bytes at offset {offset}"
            )
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _readinto_at(self, offset: int, view: memoryview) -> None:
        n = view.nbytes
        got = 0
        if self._fd is not None and hasattr(os, "preadv"):
            while got < n:
                k = os.preadv(self._fd, [view[got:]], offset + got)
                if not k:
                    break
                got += k
        else:
            with self._lock:
                self.fileobj.seek(offset)
                readinto = getattr(self.fileobj, "readinto", None)
                while got < n:
                    if readinto is not None:
                        k = readinto(view[got:])
                    else:
                        chunk = self.fileobj.read(n - got)
                        k = len(chunk)
                        view[got : got + k] = chunk
                    if not k:
                        break
                    got += k
        if got != n:
            raise ContainerError(
                f"unexpected end of file: read {got} of {n} bytes at offset {offset}"
            )

    # -- parsing ------------------------------------------------------------------------------

    def _parse(self) -> list[Member]:
        count, cd_offset, cd_size, cd_end = self._parse_end_records()
        if count > self.max_members:
            raise LimitError(
                f"archive declares {count} members, more than max_members={self.max_members}"
            )
        if count == 0:
            raise ContainerError("archive has no members (manifest.json is required)")
        if count > MAX_SECTIONS + 1:
            raise ContainerError(f"archive declares {count} members, more than the format allows")
        if cd_offset + cd_size != cd_end:
            raise ContainerError(
                f"central directory at offset {cd_offset} of size {cd_size} is not immediately "
                f"followed by the end records at offset {cd_end}"
            )
        if not count * _MIN_CENTRAL_ENTRY <= cd_size <= count * _MAX_CENTRAL_ENTRY:
            raise ContainerError(
                f"central directory size {cd_size} is impossible for {count} entries"
            )
        cd = self._read_at(cd_offset, cd_size)
        members: list[Member] = []
        seen: dict[str, str] = {}
        pos = 0
        next_header = 0
        for index in range(count):
            pos, name, header_offset, size, crc = self._parse_central(cd, pos, index, seen)
            if header_offset != next_header:
                where = quote(name)
                if header_offset < next_header:
                    problem = "overlaps the previous member"
                elif index == 0:
                    problem = "leaves bytes before the first member"
                else:
                    problem = "leaves a gap after the previous member"
                raise ContainerError(
                    f"local header at offset {header_offset} {problem} (expected offset "
                    f"{next_header})",
                    path=where,
                )
            data_offset = self._check_local(name, header_offset, size, crc, cd_offset)
            members.append(Member(name, header_offset, data_offset, size, crc))
            next_header = data_offset + size
        if pos != cd_size:
            raise ContainerError(
                f"central directory has {cd_size - pos} bytes after its {count} declared entries"
            )
        if next_header != cd_offset:
            raise ContainerError(
                f"{cd_offset - next_header} stray bytes between the last member and the central "
                f"directory at offset {cd_offset}"
            )
        return members

    def _parse_end_records(self) -> tuple[int, int, int, int]:
        """Return ``(count, cd_offset, cd_size, cd_end)`` from the end records."""
        if self.file_size < _EOCD.size:
            raise ContainerError(f"file of {self.file_size} bytes is too small to be a container")
        eocd_offset = self.file_size - _EOCD.size
        e = _EOCD.unpack(self._read_at(eocd_offset, _EOCD.size))
        if e.sig != _EOCD_SIG:
            raise ContainerError(
                "end of central directory record not found in the last 22 bytes "
                "(trailing bytes or an archive comment?)"
            )
        if e.comment_len:
            raise ContainerError(f"archive comment of {e.comment_len} bytes is not allowed")
        if e.disk or e.cd_disk:
            raise ContainerError(
                f"multi-disk archive (disk {e.disk}, central directory disk {e.cd_disk})"
            )
        if e.n_disk != e.n_total:
            raise ContainerError(
                f"entry counts disagree ({e.n_disk} on this disk, {e.n_total} total)"
            )
        if e.n_total != 0xFFFF and 0xFFFFFFFF not in (e.cd_size, e.cd_offset):
            if _needs_zip64_end(e.n_total, e.cd_offset, e.cd_size):
                raise ContainerError("end record values need zip64 records but none are used")
            if e.cd_offset + e.cd_size != eocd_offset and self._has_zip64_locator(eocd_offset):
                raise ContainerError("zip64 end records present but not needed")
            return e.n_total, e.cd_offset, e.cd_size, eocd_offset
        return self._parse_zip64_end(eocd_offset, e)

    def _has_zip64_locator(self, eocd_offset: int) -> bool:
        start = eocd_offset - _ZIP64_LOCATOR.size
        return start >= 0 and self._read_at(start, 4) == struct.pack("<I", _ZIP64_LOCATOR_SIG)

    def _parse_zip64_end(self, eocd_offset: int, e: Any) -> tuple[int, int, int, int]:
        locator_offset = eocd_offset - _ZIP64_LOCATOR.size
        record_offset = locator_offset - _ZIP64_EOCD.size
        if record_offset < 0:
            raise ContainerError("end record says zip64 but the file is too small for it")
        loc = _ZIP64_LOCATOR.unpack(self._read_at(locator_offset, _ZIP64_LOCATOR.size))
        if loc.sig != _ZIP64_LOCATOR_SIG:
            raise ContainerError("zip64 end of central directory locator not found")
        if loc.disk or loc.disks != 1:
            raise ContainerError(f"multi-disk zip64 locator (disk {loc.disk}, {loc.disks} disks)")
        if loc.offset != record_offset:
            raise ContainerError(
                f"zip64 locator points at offset {loc.offset}, expected {record_offset}"
            )
        z = _ZIP64_EOCD.unpack(self._read_at(record_offset, _ZIP64_EOCD.size))
        if z.sig != _ZIP64_EOCD_SIG:
            raise ContainerError("bad zip64 end of central directory signature")
        if z.rec_size != _ZIP64_EOCD.canonical["rec_size"]:
            raise ContainerError(f"zip64 end record size {z.rec_size} is not 44")
        if z.made_by != _VERSION_ZIP64 or z.version != _VERSION_ZIP64:
            raise ContainerError(f"zip64 end record versions {z.made_by}/{z.version} are not 45/45")
        if z.disk or z.cd_disk:
            raise ContainerError(f"multi-disk zip64 end record (disk {z.disk}, {z.cd_disk})")
        if z.n_disk != z.n_total:
            raise ContainerError(
                f"zip64 entry counts disagree ({z.n_disk} on this disk, {z.n_total} total)"
            )
        if not _needs_zip64_end(z.n_total, z.cd_offset, z.cd_size):
            raise ContainerError("zip64 end records present but not needed")
        if (
            e.n_total != _capped(z.n_total, _ZIP64_COUNT_LIMIT, 0xFFFF)
            or e.cd_size != _capped(z.cd_size, _ZIP64_LIMIT, 0xFFFFFFFF)
            or e.cd_offset != _capped(z.cd_offset, _ZIP64_LIMIT, 0xFFFFFFFF)
        ):
            raise ContainerError("end record disagrees with the zip64 end record")
        return z.n_total, z.cd_offset, z.cd_size, record_offset

    def _parse_central(
        self, cd: bytes, pos: int, index: int, seen: dict[str, str]
    ) -> tuple[int, str, int, int, int]:
        """Validate central entry ``index`` at ``cd[pos:]``.

        Returns the position of the next entry, the name, local header offset, size and CRC.
        """
        if pos + _CENTRAL.size > len(cd):
            raise ContainerError(f"central directory ends inside entry {index}")
        # Fast path: an entry that is byte for byte the canonical one for its name, offset, size
        # and CRC passes every field check below (the canonical entry is what they check for);
        # anything else takes the field-by-field path, which names the first difference.
        fields = _CENTRAL.struct.unpack_from(cd, pos)
        crc, usize, name_len, header_offset = fields[7], fields[9], fields[10], fields[16]
        end = pos + _CENTRAL.size + name_len
        if (not fields[11] and not fields[12] and end <= len(cd) and usize <= self.file_size
                and usize < _ZIP64_LIMIT and header_offset < _ZIP64_LIMIT):
            raw_name = cd[pos + _CENTRAL.size:end]
            if cd[pos:end] == _plain_central_header(raw_name, header_offset, usize, crc):
                return end, self._check_name(raw_name, index, seen), header_offset, usize, crc
        c = _CENTRAL.unpack(cd, pos)
        if c.sig != _CENTRAL_SIG:
            raise ContainerError(f"bad signature 0x{c.sig:08x} in central directory entry {index}")
        name_start = pos + _CENTRAL.size
        extra_start = name_start + c.name_len
        end = extra_start + c.extra_len + c.comment_len
        if end > len(cd):
            raise ContainerError(
                f"central directory entry {index} runs past the end of the central directory"
            )
        raw_name = cd[name_start:extra_start]
        name = self._check_name(raw_name, index, seen)
        where = quote(name)
        if c.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise ContainerError(f"encrypted member (flags 0x{c.flags:04x})", path=where)
        if c.flags & _FLAG_DATA_DESCRIPTOR:
            raise ContainerError(
                f"member uses a data descriptor (flags 0x{c.flags:04x})", path=where
            )
        if c.flags != _FLAGS:
            raise ContainerError(f"flags 0x{c.flags:04x} are not 0x{_FLAGS:04x}", path=where)
        if c.method != _METHOD_STORED:
            raise ContainerError(f"compression method {c.method} is not 0 (stored)", path=where)
        if c.time != _DOS_TIME or c.date != _DOS_DATE:
            raise ContainerError(
                f"modification time/date 0x{c.time:04x}/0x{c.date:04x} are not 0x0000/0x0021",
                path=where,
            )
        if c.comment_len:
            raise ContainerError("member comment is not allowed", path=where)
        if c.disk or c.internal:
            raise ContainerError(
                f"disk number {c.disk} / internal attributes {c.internal} are not 0", path=where
            )
        if c.external != _EXTERNAL_ATTR:
            raise ContainerError(
                f"external attributes 0x{c.external:08x} are not 0x{_EXTERNAL_ATTR:08x}",
                path=where,
            )
        if c.csize != c.usize:
            raise ContainerError(
                f"compressed size {c.csize} differs from uncompressed size {c.usize}", path=where
            )
        extra = cd[extra_start : extra_start + c.extra_len]
        size, header_offset = self._central_zip64(extra, c.usize, c.offset, where)
        version = _VERSION_ZIP64 if extra else _VERSION
        if c.made_by != _HOST_UNIX | version or c.version != version:
            raise ContainerError(
                f"version made by 0x{c.made_by:04x} / needed {c.version} are not "
                f"0x{_HOST_UNIX | version:04x} / {version}",
                path=where,
            )
        if size > self.file_size:
            raise ContainerError(
                f"declared size {size} exceeds the file size {self.file_size}", path=where
            )
        # Each field was checked above for a precise message; this guarantees the entry is
        # exactly what the writer emits even if a check is missed.
        if cd[pos:end] != _central_header(raw_name, header_offset, size, c.crc):
            raise ContainerError("central directory entry is not canonical", path=where)
        return end, name, header_offset, size, c.crc

    @staticmethod
    def _check_name(raw: bytes, index: int, seen: dict[str, str]) -> str:
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ContainerError("member name is not ASCII", path=_quote_bytes(raw)) from None
        folded = name.casefold()
        if folded in seen:
            if seen[folded] == name:
                raise ContainerError("duplicate member name", path=quote(name))
            raise ContainerError(
                f"member name duplicates {quote(seen[folded])} ignoring case", path=quote(name)
            )
        seen[folded] = name
        if not _NAME_RE.fullmatch(name):
            raise ContainerError(
                "invalid member name (expected 'manifest.json' or 'sections/NNNNNN.bin')",
                path=quote(name),
            )
        expected = _expected_name(index)
        if name != expected:
            where = quote(name)
            # A later manifest.json is already reported as a duplicate above.
            if index == 0:
                raise ContainerError("the first member must be 'manifest.json'", path=where)
            raise ContainerError(
                f"sections out of order: member {index} should be {expected!r}", path=where
            )
        return name

    @staticmethod
    def _central_zip64(extra: bytes, usize: int, offset_field: int, where: str) -> tuple[int, int]:
        """Return the true ``(size, header_offset)`` from a central entry's fields and extra."""
        size_in_extra = usize == 0xFFFFFFFF
        offset_in_extra = offset_field == 0xFFFFFFFF
        if not size_in_extra and usize >= _ZIP64_LIMIT:
            raise ContainerError(f"size {usize} needs zip64 but zip64 is not used", path=where)
        if not offset_in_extra and offset_field >= _ZIP64_LIMIT:
            raise ContainerError(
                f"offset {offset_field} needs zip64 but zip64 is not used", path=where
            )
        wanted = 2 * size_in_extra + offset_in_extra
        if not wanted:
            if extra:
                raise ContainerError(
                    f"central extra field of {len(extra)} bytes is not allowed", path=where
                )
            return usize, offset_field
        record_header = _EXTRA_HEADER.pack(_ZIP64_EXTRA_ID, 8 * wanted)
        if len(extra) != _EXTRA_HEADER.size + 8 * wanted or extra[:4] != record_header:
            raise ContainerError(
                f"central extra field must be one zip64 record with {wanted} values", path=where
            )
        values = struct.unpack_from(f"<{wanted}Q", extra, 4)
        size, header_offset = usize, offset_field
        if size_in_extra:
            size, csize = values[:2]
            if size != csize:
                raise ContainerError("zip64 compressed and uncompressed sizes differ", path=where)
            if size < _ZIP64_LIMIT:
                raise ContainerError(f"zip64 size {size} does not need zip64", path=where)
        if offset_in_extra:
            header_offset = values[-1]
            if header_offset < _ZIP64_LIMIT:
                raise ContainerError(
                    f"zip64 offset {header_offset} does not need zip64", path=where
                )
        return size, header_offset

    def _check_local(self, name: str, header_offset: int, size: int, crc: int, limit: int) -> int:
        """Validate a member's local header against its central entry; return the data offset.

        ``limit`` is the central directory offset, which no member may reach into.
        """
        raw_name = name.encode("ascii")
        available = limit - header_offset
        if available < _LOCAL.size:
            raise ContainerError(
                f"local header at offset {header_offset} runs into the central directory",
                path=quote(name),
            )
        head = self._read_at(header_offset, min(available, _MAX_LOCAL_HEADER))
        if not _is_zip64_entry(header_offset, size):
            # Fast path, as for central entries: the canonical header byte for byte passes
            # every check below; any other takes them one by one for a precise message.
            expected = _plain_local_header(raw_name, header_offset, size, crc)
            data_offset = header_offset + len(expected)
            if (head[:len(expected)] == expected and not data_offset % ALIGNMENT
                    and data_offset + size <= limit):
                return data_offset
        where = quote(name)
        h = _LOCAL.unpack(head)
        if h.sig != _LOCAL_SIG:
            raise ContainerError(
                f"bad local header signature 0x{h.sig:08x} at offset {header_offset}", path=where
            )
        local_name = head[_LOCAL.size : _LOCAL.size + h.name_len]
        if local_name != raw_name:
            raise ContainerError(
                f"local header name {_quote_bytes(local_name)} disagrees with the central "
                "directory",
                path=where,
            )
        zip64 = _is_zip64_entry(header_offset, size)
        version = _VERSION_ZIP64 if zip64 else _VERSION
        size_field = 0xFFFFFFFF if zip64 else size
        disagree = "disagree with the central directory"
        if h.flags != _FLAGS:
            raise ContainerError(f"local header flags 0x{h.flags:04x} {disagree}", path=where)
        if h.method != _METHOD_STORED:
            raise ContainerError(
                f"local header compression method {h.method} {disagree}", path=where
            )
        if h.version != version:
            raise ContainerError(f"local header version needed {h.version} {disagree}", path=where)
        if h.time != _DOS_TIME or h.date != _DOS_DATE:
            raise ContainerError(f"local header time/date {disagree}", path=where)
        if h.crc != crc:
            raise ContainerError(f"local header CRC 0x{h.crc:08x} {disagree}", path=where)
        if h.csize != size_field or h.usize != size_field:
            raise ContainerError(
                f"local header sizes {h.csize}/{h.usize} {disagree} (expected {size_field})",
                path=where,
            )
        header_end: int = _LOCAL.size + h.name_len + h.extra_len
        if header_end <= len(head):
            self._check_local_extra(head[_LOCAL.size + h.name_len : header_end], zip64, size, where)
        data_offset = header_offset + header_end
        if data_offset % ALIGNMENT:
            raise ContainerError(
                f"data at offset {data_offset} is not {ALIGNMENT}-byte aligned", path=where
            )
        expected = _local_header(raw_name, header_offset, size, crc)
        if header_end != len(expected):
            raise ContainerError(
                f"local extra field is {h.extra_len} bytes where the minimal alignment padding "
                f"gives {len(expected) - _LOCAL.size - h.name_len}",
                path=where,
            )
        if data_offset + size > limit:
            raise ContainerError(
                f"data of {size} bytes at offset {data_offset} runs past offset {limit}",
                path=where,
            )
        # As for central entries: a byte-exact comparison backs up the field checks.
        if head[:header_end] != expected:
            raise ContainerError("local header is not canonical", path=where)
        return data_offset

    @staticmethod
    def _check_local_extra(extra: bytes, zip64: bool, size: int, where: str) -> None:
        pos = 0
        if zip64:
            if len(extra) < 20 or extra[:4] != _EXTRA_HEADER.pack(_ZIP64_EXTRA_ID, 16):
                raise ContainerError("local extra field lacks the zip64 record", path=where)
            if struct.unpack_from("<QQ", extra, 4) != (size, size):
                raise ContainerError(
                    "local zip64 sizes disagree with the central directory", path=where
                )
            pos = 20
        if pos == len(extra):
            return
        if len(extra) - pos < _EXTRA_HEADER.size:
            raise ContainerError("truncated local extra field", path=where)
        tag, length = _EXTRA_HEADER.unpack_from(extra, pos)
        if tag != _ALIGN_EXTRA_ID:
            raise ContainerError(f"unexpected local extra field id 0x{tag:04x}", path=where)
        if pos + _EXTRA_HEADER.size + length != len(extra):
            raise ContainerError(
                "the alignment record must be the last and only other local extra field",
                path=where,
            )
        if extra[pos + _EXTRA_HEADER.size :].count(0) != length:
            raise ContainerError("alignment padding holds non-zero bytes", path=where)

    # -- public access ------------------------------------------------------------------------

    def member(self, name: str) -> Member:
        """Return the member called ``name``.

        Raises
        ------
        ContainerError
            If there is no such member.
        """
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise ContainerError("no such member", path=quote(name)) from None

    def _span(self, name: str, start: int, length: int | None) -> tuple[Member, int]:
        m = self.member(name)
        if length is None:
            length = m.size - start
        if start < 0 or length < 0 or start + length > m.size:
            raise ContainerError(
                f"range [{start}, {start + length}) is outside the member's {m.size} bytes",
                path=quote(name),
            )
        return m, length

    def read(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes of member ``name`` from ``start`` (default: to its end).

        Raises
        ------
        ContainerError
            If the range is outside the member or the file is shorter than declared.
        """
        m, length = self._span(name, start, length)
        return self._read_member(m, m.data_offset + start, length)

    def _read_member(self, m: Member, offset: int, n: int) -> bytes:
        # Section data comes from the file when used, even where the opening read kept a copy.
        if self._head is not None and m is not self.members[0]:
            return self._read_file(offset, n)
        return self._read_at(offset, n)

    def readinto(self, name: str, start: int, buf: bytearray | memoryview) -> None:
        """Fill the writable C-contiguous buffer ``buf`` with member bytes from ``start``."""
        view = memoryview(buf)
        if view.readonly:
            raise TypeError("readinto() needs a writable buffer")
        view = _byte_view(view)
        m, length = self._span(name, start, view.nbytes)
        self._readinto_at(m.data_offset + start, view)

    def read_manifest(self) -> bytes:
        """Return the ``manifest.json`` bytes.

        Raises
        ------
        LimitError
            If the manifest is larger than ``max_manifest_bytes`` (checked before reading).
        """
        m = self.members[0]
        if m.size > self.max_manifest_bytes:
            raise LimitError(
                f"manifest of {m.size} bytes exceeds max_manifest_bytes={self.max_manifest_bytes}",
                path=quote(MANIFEST_NAME),
            )
        return self._read_at(m.data_offset, m.size)

    def verify_crc(self, name: str) -> None:
        """Check member ``name`` against its recorded CRC-32, reading it in bounded chunks.

        Raises
        ------
        IntegrityError
            If the data does not match.
        """
        m = self.member(name)
        crc = 0
        pos = 0
        while pos < m.size:
            n = min(_CRC_CHUNK, m.size - pos)
            crc = zlib.crc32(self._read_member(m, m.data_offset + pos, n), crc)
            pos += n
        if crc != m.crc32:
            raise IntegrityError(
                f"CRC-32 0x{crc:08x} does not match the recorded 0x{m.crc32:08x}",
                path=quote(name),
            )
