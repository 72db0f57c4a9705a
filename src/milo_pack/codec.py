"""Sections: flat arrays cut into chunks, filtered, zstd-compressed, digested.

A *section* is one zip member holding one logical 1-D array of a single dtype (the concatenation
of every array the writer packed into it).  It is cut into chunks of ``chunk_length`` elements
(the last may be shorter); each chunk goes through the section's filters and, for codec
``zstd``, becomes one zstd frame with content size and checksum.  After the chunk data comes a
table with each chunk's stored size and SHA-256, then the 8-byte magic ``MILOIDX1``.  The manifest
holds the SHA-256 of that table, so one digest in the manifest covers every chunk, and a reader can
verify any single chunk it fetches (lazy and range reads) without reading the rest.

Codec ``raw`` stores chunks unfiltered and uncompressed; since zip member data is 64-byte aligned,
the whole data region can then be memory-mapped.

The byte layout is specified in ``docs/FORMAT.md``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import zstandard

from . import _arrays
from .buffers import BufferPool
from .container import section_name
from .errors import ArrayError, IntegrityError, LimitError, ManifestError, quote
from .filters import (
    INT_DTYPES,
    Delta,
    Filter,
    Narrow,
    RelativeIndex,
    Shuffle,
    WholeFloat,
    decode_chain,
    filters_from_config,
)
from .limits import Limits

__all__ = [
    "SectionInfo",
    "SectionPlan",
    "SectionStore",
    "write_section",
    "check_dtype",
    "CHUNK_BYTES",
    "GROUP_CHUNK_BYTES",
]

CHUNK_BYTES = 1 << 20
GROUP_CHUNK_BYTES = 512 << 10
INDEX_MAGIC = b"MILOIDX1"
_ENTRY = struct.Struct("<Q32s")
# Below this many bytes a section is written without measuring filter candidates.
_MEASURE_MIN_BYTES = 64 << 10
_SAMPLE_BYTES = 256 << 10
_WORKERS = max(1, min(8, os.cpu_count() or 1))
# Chunks decoded ahead of the reader at most, across all sections: enough to keep the workers
# busy (fewer measurably slows a forest load), and bounded whatever the number of sections.
_AHEAD = 4 * _WORKERS + 2

# The closed set of dtypes an array may have in a file (SECURITY.md rule 7): no object, void,
# structured or pointer-carrying types.
_DTYPE_KINDS = "biufcUSMm"


def check_dtype(text: Any, where: str) -> np.dtype:
    """Parse a dtype string from the manifest, allowing only the closed set of plain dtypes."""
    if not isinstance(text, str) or not 2 <= len(text) <= 16:
        raise ArrayError(f"bad dtype {quote(text)}", where)
    dtype = _parsed_dtypes.get(text)
    if dtype is not None:
        return dtype
    dtype = _parse_dtype(text, where)
    if len(_parsed_dtypes) < 256:  # a file cannot grow this beyond a few kB
        _parsed_dtypes[text] = dtype
    return dtype


_parsed_dtypes: dict[str, np.dtype] = {}
_HEX_DIGITS = frozenset("0123456789abcdef")


def _parse_dtype(text: str, where: str) -> np.dtype:
    order, kind, rest = text[0], text[1], text[2:]
    if order not in "<>|" or kind not in _DTYPE_KINDS:
        raise ArrayError(f"dtype {quote(text)} is not allowed", where)
    if kind in "Mm":
        # datetime units are the only non-digit suffix numpy accepts; keep them to [unit].
        size, _, unit = rest.partition("[")
        if size != "8" or not (unit == "" or (unit.endswith("]") and unit[:-1].isalpha())):
            raise ArrayError(f"dtype {quote(text)} is not allowed", where)
    elif not rest.isdigit() or not rest.isascii():
        raise ArrayError(f"dtype {quote(text)} is not allowed", where)
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise ArrayError(f"bad dtype {quote(text)}", where) from exc
    if dtype.str != text or dtype.itemsize == 0:
        raise ArrayError(f"dtype {quote(text)} is not in canonical form", where)
    return dtype


# --------------------------------------------------------------------------------------------
# Manifest entry
# --------------------------------------------------------------------------------------------


@dataclass
class SectionInfo:
    """What the manifest says about one section (the entry in ``sections``)."""

    dtype: np.dtype
    length: int
    filters: list[Filter]
    codec: str
    level: int
    chunk_length: int
    nbytes: int
    digest: str

    @property
    def n_chunks(self) -> int:
        return -(-self.length // self.chunk_length) if self.length else 0

    def chunk_span(self, k: int) -> tuple[int, int]:
        start = k * self.chunk_length
        return start, min(self.length, start + self.chunk_length)

    @property
    def encoded_dtype(self) -> np.dtype:
        dtype = self.dtype
        for f in self.filters:
            dtype = f.encoded_dtype(dtype)
        return dtype

    def to_json(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype.str,
            "length": self.length,
            "filters": [f.get_config() for f in self.filters],
            "codec": self.codec,
            "level": self.level,
            "chunk_length": self.chunk_length,
            "nbytes": self.nbytes,
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, entry: Any, where: str, limits: Limits) -> SectionInfo:
        keys = {"dtype", "length", "filters", "codec", "level", "chunk_length", "nbytes", "digest"}
        if not isinstance(entry, dict) or set(entry) != keys:
            raise ManifestError(f"a section entry needs exactly the keys {sorted(keys)}", where)
        dtype = check_dtype(entry["dtype"], f"{where}.dtype")
        length, chunk_length, nbytes = entry["length"], entry["chunk_length"], entry["nbytes"]
        for name, value in (("length", length), ("chunk_length", chunk_length),
                            ("nbytes", nbytes), ("level", entry["level"])):
            if type(value) is not int or value < 0:
                raise ManifestError(f"section {name} must be a non-negative int", where)
        if length == 0 or chunk_length == 0:
            raise ManifestError("empty sections are not written", where)
        if length * dtype.itemsize > limits.max_section_bytes:
            raise LimitError(
                f"section of {length * dtype.itemsize} bytes exceeds max_section_bytes "
                f"({limits.max_section_bytes})", where)
        if chunk_length * dtype.itemsize > limits.max_chunk_bytes:
            raise LimitError(
                f"chunks of {chunk_length * dtype.itemsize} bytes exceed max_chunk_bytes "
                f"({limits.max_chunk_bytes})", where)
        codec = entry["codec"]
        if codec not in ("zstd", "raw"):
            raise ManifestError(f"unknown codec {quote(codec)}", where)
        filters = filters_from_config(entry["filters"], dtype, where)
        if codec == "raw" and filters:
            raise ManifestError("raw sections take no filters", where)
        digest = entry["digest"]
        if (not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71
                or not _HEX_DIGITS.issuperset(digest[7:])):
            raise ManifestError(f"bad digest {quote(digest)}", where)
        info = cls(dtype, length, filters, codec, entry["level"], chunk_length, nbytes, digest)
        table = info.n_chunks * _ENTRY.size + len(INDEX_MAGIC)
        if nbytes < table:
            raise ManifestError("section nbytes is smaller than its chunk table", where)
        return info


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derived:
    """A section source computed only when the section is written (e.g. a tree's split rows).

    Handlers use it to store a transformed view of the model (rows selected by a mask) without
    holding every transformed array until the walk ends: ``make()`` runs when the writer reaches
    this source and its result is dropped right after.
    """

    length: int
    make: Callable[[], np.ndarray]


@dataclass
class SectionPlan:
    """A section being collected while ``dump`` walks the object graph.

    ``sources`` are 1-D arrays (often strided views into the model's own arrays, never copies)
    or :class:`Derived` sources, whose concatenation is the section; they are read chunk by chunk
    only when the section is written, so dumping holds no second copy of the model.
    """

    dtype: np.dtype
    hint: str | None = None
    sources: list[np.ndarray | Derived] = field(default_factory=list)
    length: int = 0
    _current: tuple[int, np.ndarray] | None = None
    # Read a member's rows at a time (a packed ensemble's column, even from one source):
    # group-sized chunks.
    by_member: bool = False

    def add(self, flat: np.ndarray | Derived) -> int:
        start = self.length
        self.sources.append(flat)
        self.length += flat.length if isinstance(flat, Derived) else flat.shape[0]
        return start

    def source(self, i: int) -> np.ndarray:
        """Source ``i`` as an array; the last derived one is kept for the next chunk."""
        src = self.sources[i]
        if not isinstance(src, Derived):
            return src
        if self._current is not None and self._current[0] == i:
            return self._current[1]
        arr = np.asarray(src.make(), dtype=self.dtype).reshape(-1)
        if arr.shape[0] != src.length:
            raise ArrayError(f"derived source made {arr.shape[0]} elements, not {src.length}")
        self._current = (i, arr)
        return arr

    def lengths(self) -> Iterable[int]:
        for src in self.sources:
            yield src.length if isinstance(src, Derived) else src.shape[0]

    def gather(self, start: int, stop: int) -> np.ndarray:
        """Copy elements ``[start, stop)`` of the concatenation into one contiguous array."""
        out = np.empty(stop - start, dtype=self.dtype)
        pos = 0  # position of the current source in the concatenation
        filled = 0
        for i, n in enumerate(self.lengths()):
            if pos + n > start and pos < stop:
                lo = max(start, pos) - pos
                hi = min(stop, pos + n) - pos
                out[filled:filled + hi - lo] = self.source(i)[lo:hi]
                filled += hi - lo
            pos += n
            if pos >= stop:
                break
        return out

    def iter_sources(self) -> Iterable[np.ndarray]:
        for i in range(len(self.sources)):
            yield self.source(i)
        self._current = None


def _int_range(plan: SectionPlan) -> tuple[int, int]:
    lo, hi = None, None
    for src in plan.iter_sources():
        if src.shape[0]:
            a, b = _arrays.minmax(src)
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    return (0, 0) if lo is None else (int(lo), int(cast("int | float", hi)))  # hi is set with lo


def _is_monotone(plan: SectionPlan) -> bool:
    last = None
    for src in plan.iter_sources():
        if src.shape[0] == 0:
            continue
        if _arrays.check_monotone(src) != -1:
            return False
        if last is not None and src[0] < last:
            return False
        last = src[-1]
    return True


def _narrowest(lo: int, hi: int, dtype: np.dtype) -> np.dtype | None:
    candidate: np.dtype  # INT_DTYPES (filters.py) holds dtypes that mypy sees as Any
    for candidate in INT_DTYPES:
        info = np.iinfo(candidate)
        if candidate.itemsize < dtype.itemsize and info.min <= lo and hi <= info.max:
            wide = np.iinfo(dtype)
            if wide.min <= info.min and info.max <= wide.max:
                return candidate
    return None


def _whole_float_range(plan: SectionPlan) -> tuple[int, int] | None:
    """Integer range of a float section whose values are all whole numbers, else None."""
    lo, hi = None, None
    for src in plan.iter_sources():
        if not src.shape[0]:
            continue
        a, b = _arrays.minmax(src)
        if not (np.isfinite(a) and np.isfinite(b)) or abs(a) > 2**53 or abs(b) > 2**53:
            return None
        if not np.array_equal(np.trunc(src), src) or np.signbit(src[src == 0]).any():
            return None
        lo = int(a) if lo is None else min(lo, int(a))
        hi = int(b) if hi is None else max(hi, int(b))
    return None if lo is None else (lo, cast(int, hi))  # hi is set with lo


def _smallest_int(lo: int, hi: int) -> np.dtype | None:
    candidate: np.dtype  # INT_DTYPES (filters.py) holds dtypes that mypy sees as Any
    for candidate in INT_DTYPES:
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return candidate
    return None


def _with_shuffle(chains: list[list[Filter]], dtype: np.dtype) -> list[list[Filter]]:
    """Each chain, and each chain followed by a byte shuffle of its output."""
    result = []
    for chain in chains:
        result.append(chain)
        out = dtype
        for f in chain:
            out = f.encoded_dtype(out)
        if out.itemsize > 1:
            result.append([*chain, Shuffle(out.itemsize)])
    return result


def _candidates(plan: SectionPlan) -> list[list[Filter]]:
    """Filter chains worth trying for this section, best guess first."""
    dtype = plan.dtype
    if dtype.byteorder == ">" or dtype.kind not in "iuf":
        return [[]]
    if dtype.kind == "f":
        chains: list[list[Filter]] = [[]]
        whole = _whole_float_range(plan) if dtype.itemsize > 2 else None
        target = _smallest_int(*whole) if whole else None
        if target is not None and target.itemsize <= dtype.itemsize:
            chains.append([WholeFloat(target, dtype)])
        return _with_shuffle(chains, dtype)
    lo, hi = _int_range(plan)
    chains = []
    if plan.hint == "children" and dtype.kind == "i" and dtype.itemsize in (4, 8):
        # Encoded values lie in [lo - length, hi + 1] (see RelativeIndex).
        rel_lo, rel_hi = min(lo - plan.length, 0), max(hi + 1, 0)
        if np.iinfo(dtype).min <= rel_lo:
            narrow = _narrowest(rel_lo, rel_hi, dtype)
            chains.append([RelativeIndex(-1)] + ([Narrow(narrow, dtype)] if narrow else []))
    if plan.length > 1 and _is_monotone(plan):
        d_lo, d_hi = min(lo, 0), max(hi - lo, hi)
        narrow = _narrowest(d_lo, d_hi, dtype)
        chains.append([Delta()] + ([Narrow(narrow, dtype)] if narrow else []))
    narrow = _narrowest(lo, hi, dtype)
    chains.append([Narrow(narrow, dtype)] if narrow else [])
    return _with_shuffle(chains, dtype)


def _encode_chunk(chain: Sequence[Filter], arr: np.ndarray, start: int) -> np.ndarray:
    for f in chain:
        arr = f.encode(arr, start)
    return np.ascontiguousarray(arr)


def _choose_filters(plan: SectionPlan, level: int, chunk_length: int) -> list[Filter]:
    chains = _candidates(plan)
    if len(chains) == 1 or plan.length * plan.dtype.itemsize < _MEASURE_MIN_BYTES:
        return chains[0]
    # Measure on a sample from the start: habit is a poor guide (shuffle makes tree thresholds
    # larger).  A quarter of a chunk decides as well as a whole one at a quarter of the cost.
    sample = plan.gather(0, min(plan.length, chunk_length, _SAMPLE_BYTES // plan.dtype.itemsize))
    cctx = zstandard.ZstdCompressor(level=level)
    best, best_size = chains[0], None
    for chain in chains:
        try:
            # zstandard reads any buffer; its stub lists only bytes, bytearray and memoryview.
            size = len(cctx.compress(_encode_chunk(chain, sample, 0)))  # type: ignore[arg-type]
        except ArrayError:
            continue
        if best_size is None or size < best_size:
            best, best_size = chain, size
    return best


def chunk_length_for(dtype: np.dtype, grouped: bool = False) -> int:
    """Elements per chunk: ``CHUNK_BYTES`` of them, ``GROUP_CHUNK_BYTES`` in a group's section.

    A group's section (one column of every tree of a forest) is read a member at a time, so a
    load holds one partly used chunk per section; ~10 sections side by side make the chunk size
    the load's overhead.  Half-size chunks there cost ~3% of file size and save ~5-7 MB on a
    300-tree forest (bench_lazy.py); single arrays are read whole, straight into their buffer.
    """
    return max(1, (GROUP_CHUNK_BYTES if grouped else CHUNK_BYTES) // dtype.itemsize)


def write_section(
    sink: Any, plan: SectionPlan, level: int, pool: ThreadPoolExecutor | None
) -> SectionInfo:
    """Encode ``plan`` chunk by chunk into ``sink`` (an object with ``write``).

    Chunks are gathered here, in order (sources may be derived on the fly, one at a time), then
    filtered, compressed and hashed in worker threads (zstd, hashlib and the Cython kernels
    release the GIL) and written in order, with at most a few chunks in flight, so memory stays
    bounded whatever the section's size.
    """
    dtype = plan.dtype
    chunk_length = chunk_length_for(dtype, grouped=plan.by_member or len(plan.sources) > 1)
    raw = level == 0
    chain = [] if raw else _choose_filters(plan, level, chunk_length)
    cctx_local = threading.local()

    def gather(k: int) -> np.ndarray:
        start = k * chunk_length
        return plan.gather(start, min(plan.length, start + chunk_length))

    def encode(k: int, arr: np.ndarray) -> tuple[bytes | memoryview, bytes]:
        data = _encode_chunk(chain, arr, k * chunk_length)
        if raw:
            # numpy's stub declares ndarray.__buffer__ for Python >= 3.12 only (mypy checks 3.10).
            payload: bytes | memoryview = memoryview(
                data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        else:
            cctx = getattr(cctx_local, "cctx", None)
            if cctx is None:
                cctx = cctx_local.cctx = zstandard.ZstdCompressor(
                    level=level, write_checksum=True, write_content_size=True)
            payload = cctx.compress(data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        return payload, hashlib.sha256(payload).digest()

    n_chunks = -(-plan.length // chunk_length)
    table = bytearray()
    written = 0

    def emit(payload: bytes | memoryview, digest: bytes) -> None:
        nonlocal written
        sink.write(payload)
        table.extend(_ENTRY.pack(len(payload), digest))
        written += len(payload)

    if pool is None or n_chunks == 1:
        for k in range(n_chunks):
            emit(*encode(k, gather(k)))
    else:
        window = 2 * _WORKERS
        pending: list[Future[tuple[bytes | memoryview, bytes]]] = []
        for k in range(n_chunks):
            pending.append(pool.submit(encode, k, gather(k)))
            if len(pending) >= window:
                emit(*pending.pop(0).result())
        for fut in pending:
            emit(*fut.result())
    table.extend(INDEX_MAGIC)
    sink.write(bytes(table))
    return SectionInfo(
        dtype=dtype,
        length=plan.length,
        filters=chain,
        codec="raw" if raw else "zstd",
        level=level,
        chunk_length=chunk_length,
        nbytes=written + len(table),
        digest="sha256:" + hashlib.sha256(table).hexdigest(),
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _frame_size(data: bytes) -> int:
    """Length of the zstd frame at the start of ``data`` from its block headers, or -1.

    Walks only the 3-byte block headers (linear in the number of blocks, no decoding), so a
    chunk with a second frame or trailing bytes after its frame is refused.
    """
    try:
        pos = zstandard.frame_header_size(data)
    except zstandard.ZstdError:
        return -1
    has_checksum = bool(data[4] & 4)
    end = len(data)
    while pos + 3 <= end:
        header = int.from_bytes(data[pos:pos + 3], "little")
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3:
            return -1
        pos += 3 + (1 if kind == 1 else size)
        if header & 1:
            return pos + 4 * has_checksum
    return -1


class _ChunkCache:
    """A byte-bounded LRU of decoded chunks (futures, so concurrent readers share one decode)."""

    def __init__(self, max_bytes: int,
                 retire: Callable[[Future[np.ndarray]], None] = lambda fut: None) -> None:
        self.max_bytes = max_bytes
        self.retire = retire  # told of every chunk dropped (under the lock)
        self.items: OrderedDict[tuple[int, int], tuple[Future[np.ndarray], int]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()
        # Elements copied out of each cached chunk: a chunk read through once (loads walk a
        # section in order) is dropped at once instead of aging out of the LRU, so an eager
        # load holds a few chunks per section, not the whole budget.
        self.consumed: dict[tuple[int, int], int] = {}
        # Chunks decoded ahead that no read has touched yet, bounded apart from the LRU budget:
        # a model with many sections must not decode a chunk ahead for each of them.
        self.ahead: set[tuple[int, int]] = set()
        # Streaming (a lazy load with cache_bytes=0): at most one chunk per section is kept.
        self.streaming = False

    def get(self, key: tuple[int, int]) -> Future[np.ndarray] | None:
        with self.lock:
            item = self.items.get(key)
            if item is None:
                return None
            self.items.move_to_end(key)
            self.ahead.discard(key)
            return item[0]

    def put_ahead(self, key: tuple[int, int], fut: Future[np.ndarray], nbytes: int,
                  limit: int) -> bool:
        """Cache a read-ahead chunk unless ``limit`` are pending already or it is cached."""
        with self.lock:
            if key in self.items or len(self.ahead) >= limit:
                return False
            self.ahead.add(key)
        self.put(key, fut, nbytes)
        return True

    def put(self, key: tuple[int, int], fut: Future[np.ndarray], nbytes: int
            ) -> Future[np.ndarray]:
        with self.lock:
            item = self.items.get(key)
            if item is not None:
                return item[0]
            if self.streaming:
                # One chunk per section: reads move forward through each section, and a
                # reader holds the chunk it copies from (a later read of an earlier chunk
                # decodes it again).
                for old in [k for k in self.items if k[0] == key[0] and k not in self.ahead]:
                    self._drop(old)
            self.items[key] = (fut, nbytes)
            self.bytes += nbytes
            while self.bytes > self.max_bytes and len(self.items) > 1:
                self._drop(next(iter(self.items)))
            return fut

    def _drop(self, key: tuple[int, int]) -> None:
        """Forget a cached chunk and what was used of it (under the lock)."""
        fut, size = self.items.pop(key)
        self.bytes -= size
        self.retire(fut)
        self.ahead.discard(key)
        self.consumed.pop(key, None)

    def consume(self, key: tuple[int, int], count: int, length: int) -> None:
        """Note ``count`` elements of chunk ``key`` were used; drop it once all ``length`` were."""
        with self.lock:
            used = self.consumed.get(key, 0) + count
            if used < length:
                self.consumed[key] = used
                return
            self.consumed.pop(key, None)
            self.ahead.discard(key)
            item = self.items.pop(key, None)
            if item is not None:
                self.bytes -= item[1]
                self.retire(item[0])

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.consumed.clear()
            self.ahead.clear()
            self.bytes = 0


# ``mmap_region(member_name, offset, length)``: a view of the file's bytes, or None.
_MmapRegion = Callable[[str, int, int], memoryview | None]
# ``release_region(member_name, offset, length)``: drop those mapped pages from this process
# (they are read again from the file, if ever touched again).
_ReleaseRegion = Callable[[str, int, int], None]


class SectionStore:
    """Reads sections of one open container: verified, decoded, on demand.

    Parameters
    ----------
    read_at : callable
        ``read_at(member_name, offset, length) -> bytes`` returning exactly ``length`` bytes of
        a member (the container reader; it is called under this store's lock).
    infos : list of SectionInfo
        The manifest's section table.
    member_size : callable
        ``member_size(member_name) -> int``.
    limits : Limits
        Budgets (window size, chunk size).
    cache_bytes : int
        Budget for decoded chunks kept for partial reads.
    """

    def __init__(
        self,
        read_at: Callable[[str, int, int], bytes],
        infos: list[SectionInfo],
        member_size: Callable[[str], int],
        limits: Limits,
        cache_bytes: int = 64 << 20,
        mmap_region: _MmapRegion | None = None,
        release_region: _ReleaseRegion | None = None,
    ) -> None:
        self._read_at = read_at
        self._member_size = member_size
        self._mmap_region = mmap_region
        self._release_region = release_region
        self.infos = infos
        self.limits = limits
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._offsets: dict[int, list[int]] = {}
        self._digests: dict[int, list[bytes]] = {}
        # Chunks' and trees' buffers, reused (see buffers.py): chunks the cache drops go here.
        self.buffers = BufferPool()
        self._cache = _ChunkCache(cache_bytes, self._retire)
        self._pool: ThreadPoolExecutor | None = None
        self._dctx = threading.local()
        self._mapped_ok: set[int] = set()
        # I/O counters (under _lock): what lazy and partial reads really fetched.
        self.bytes_read = 0
        self.chunks_read = 0

    # -- plumbing ----------------------------------------------------------------------------
    member_name = staticmethod(section_name)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._cache.clear()
        self.buffers.clear()

    def _retire(self, fut: Future[np.ndarray]) -> None:
        """A decoded chunk the cache dropped: its buffer is reused once no reader holds it."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.buffers.give(fut.result())

    def stream(self) -> None:
        """Keep at most one decoded chunk per section from now on (what streaming through a
        model in order needs): memory bounded by the number of sections, not the budget."""
        self._cache.streaming = True

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="milo-decode")
        return self._pool

    def _read(self, name: str, offset: int, length: int) -> bytes:
        with self._lock:
            data = self._read_at(name, offset, length)
            self.bytes_read += len(data)
        if len(data) != length:
            raise IntegrityError(f"short read from {name}", name)
        return data

    def _index(self, index: int) -> tuple[list[int], list[bytes]]:
        """Read and verify a section's chunk table (once)."""
        offsets = self._offsets.get(index)
        if offsets is not None:
            return offsets, self._digests[index]
        info = self.infos[index]
        name = self.member_name(index)
        size = self._member_size(name)
        n = info.n_chunks
        table_len = n * _ENTRY.size + len(INDEX_MAGIC)
        if size != info.nbytes or size < table_len:
            raise IntegrityError(
                f"member is {size} bytes but the manifest says {info.nbytes}", name)
        table = self._read(name, size - table_len, table_len)
        if "sha256:" + hashlib.sha256(table).hexdigest() != info.digest:
            raise IntegrityError("chunk table does not match the manifest digest", name)
        if table[-len(INDEX_MAGIC):] != INDEX_MAGIC:
            raise IntegrityError("chunk table magic missing", name)
        offsets = [0]
        digests = []
        itemsize = info.encoded_dtype.itemsize
        for k in range(n):
            stored, digest = _ENTRY.unpack_from(table, k * _ENTRY.size)
            start, stop = info.chunk_span(k)
            if info.codec == "raw" and stored != (stop - start) * itemsize:
                raise IntegrityError(f"raw chunk {k} has the wrong size", name)
            offsets.append(offsets[-1] + stored)
            digests.append(digest)
        if offsets[-1] != size - table_len:
            raise IntegrityError("chunk sizes do not add up to the section size", name)
        with self._lock:
            self._offsets[index] = offsets
            self._digests[index] = digests
        return offsets, digests

    def _stored_chunk(self, index: int, k: int) -> bytes:
        offsets, digests = self._index(index)
        name = self.member_name(index)
        data = self._read(name, offsets[k], offsets[k + 1] - offsets[k])
        with self._lock:
            self.chunks_read += 1
        if hashlib.sha256(data).digest() != digests[k]:
            raise IntegrityError(f"chunk {k} does not match its digest", name)
        return data

    def _decompress(self, index: int, k: int, data: bytes, out: memoryview) -> None:
        """Decompress one verified frame into ``out`` (exactly its declared size)."""
        name = self.member_name(index)
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as exc:
            raise ArrayError(f"chunk {k} is not a zstd frame: {exc}", name) from None
        expected = out.nbytes
        if params.content_size != expected:
            raise ArrayError(
                f"chunk {k} declares {params.content_size} bytes, expected {expected}", name)
        if params.dict_id != 0:
            raise ArrayError(f"chunk {k} needs a zstd dictionary", name)
        if not params.has_checksum:
            raise ArrayError(f"chunk {k} has no zstd checksum", name)
        if params.window_size > self.limits.max_window_bytes:
            raise LimitError(
                f"chunk {k} asks for a {params.window_size}-byte zstd window "
                f"(max_window_bytes={self.limits.max_window_bytes})", name)
        if _frame_size(data) != len(data):
            raise ArrayError(f"chunk {k} is not exactly one zstd frame", name)
        dctx = getattr(self._dctx, "dctx", None)
        if dctx is None:
            dctx = self._dctx.dctx = zstandard.ZstdDecompressor(
                max_window_size=self.limits.max_window_bytes)
        try:
            reader = dctx.stream_reader(data, read_across_frames=False, read_size=len(data))
            filled = 0
            while filled < expected:
                got = reader.readinto(out[filled:])
                if got == 0:
                    break
                filled += got
            # Never decompress past the declared size: one extra byte is enough to know.
            if filled != expected or reader.read(1):
                raise ArrayError(f"chunk {k} does not decompress to its declared size", name)
            if reader.tell() != expected:
                raise ArrayError(f"chunk {k} is malformed", name)
        except zstandard.ZstdError as exc:
            raise ArrayError(f"chunk {k} is corrupt: {exc}", name) from None

    def _decode_chunk(self, index: int, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decode chunk ``k`` into ``out`` (contiguous, section dtype) or a new array."""
        info = self.infos[index]
        start, stop = info.chunk_span(k)
        count = stop - start
        data = self._stored_chunk(index, k)
        if not info.filters:
            target = self.buffers.empty(count, info.dtype) if out is None else out
            if info.codec == "raw":
                target.view(np.uint8)[...] = np.frombuffer(data, np.uint8)
            else:
                self._decompress(index, k, data,
                                 memoryview(target.view(np.uint8)))  # type: ignore[arg-type]
            return target
        encoded = self.buffers.empty(count, info.encoded_dtype)
        self._decompress(index, k, data,
                         memoryview(encoded.view(np.uint8)))  # type: ignore[arg-type]
        del data
        target = self.buffers.empty(count, info.dtype) if out is None else out
        try:
            return decode_chain(info.filters, encoded, start, target)
        except ArrayError as exc:
            raise ArrayError(f"chunk {k}: {exc.message}", self.member_name(index)) from None
        finally:
            self.buffers.give(encoded)  # reused once the decode's own views of it are gone

    def _cached_chunk(self, index: int, k: int) -> np.ndarray:
        fut = self._cache.get((index, k))
        if fut is None:
            info = self.infos[index]
            fut = self._cache.put((index, k), Future(), info.chunk_length * info.dtype.itemsize)
        if not fut.done():
            # A chunk queued for read-ahead but not started yet is decoded here, not waited for.
            self._fulfil(fut, index, k)
        return fut.result()

    def _prefetch(self, index: int, first: int, count: int) -> None:
        info = self.infos[index]
        nbytes = info.chunk_length * info.dtype.itemsize
        cache = self._cache
        for k in range(first, min(first + count, info.n_chunks)):
            # Most calls find the chunks ahead cached already: a look without the lock first
            # (put_ahead decides under it) spares making a Future for nothing.
            if (index, k) in cache.items or len(cache.ahead) >= _AHEAD:
                continue
            fut: Future[np.ndarray] = Future()
            if not cache.put_ahead((index, k), fut, nbytes, _AHEAD):
                continue
            self._get_pool().submit(self._fulfil, fut, index, k)

    def _fulfil(self, fut: Future[np.ndarray], index: int, k: int) -> None:
        """Decode chunk ``k`` into ``fut`` unless another thread has claimed it (one decode,
        every waiter gets its result or its error)."""
        with self._claim_lock:  # check-then-claim as one step: Future logs a double claim
            if fut.running() or fut.done() or not fut.set_running_or_notify_cancel():
                return
        try:
            fut.set_result(self._decode_chunk(index, k))
        except BaseException as exc:  # raised to every reader of this chunk
            fut.set_exception(exc)

    # -- public ------------------------------------------------------------------------------
    def read(self, index: int, start: int, count: int, out: np.ndarray | None = None,
             where: str = "", prefetch: int = 0, view: bool = False) -> np.ndarray:
        """Decode elements ``[start, start + count)`` of section ``index``.

        Whole chunks go straight into ``out`` (decoded in parallel when there are several);
        partly covered chunks are decoded once into the cache and copied from it, and the
        ``prefetch`` chunks after the read are decoded ahead in the background (reads of
        consecutive arrays, such as a forest's trees), at most ``_AHEAD`` across the store;
        ``prefetch=0`` reads no more than asked.
        ``out`` may be a strided 1-D view (a field of a structured array).
        ``view``: with no ``out``, elements that lie in one cached chunk come back as a
        read-only view of it, not a copy (for a caller that only reads them, at once).
        """
        info = self.infos[index]
        if start < 0 or count < 0 or start + count > info.length:
            raise ArrayError(
                f"elements [{start}, {start + count}) are outside section {index} "
                f"of length {info.length}", where)
        cl = info.chunk_length
        end = start + count
        first, last = start // cl, (end - 1) // cl
        if view and out is None and count and first == last:
            c_start, c_stop = info.chunk_span(first)
            if start != c_start or end != c_stop or self._cache.get((index, first)) is not None:
                chunk = self._cached_chunk(index, first)
                part = chunk[start - c_start:end - c_start]
                part.flags.writeable = False  # the cache's chunk: never written through
                self._cache.consume((index, first), count, c_stop - c_start)
                if prefetch and end < info.length:
                    self._prefetch(index, first + 1, prefetch)
                return part
        if out is None:
            # Rows across chunks are copied: into a spare buffer when the caller handed one
            # back (a forest's blocks read such rows again and again; fresh memory is faulted
            # in page by page).
            out = self.buffers.empty(count, info.dtype)
        if count == 0:
            return out
        # A strided destination (a field of a record array) spanning whole chunks: they are
        # decoded side by side into one contiguous buffer, copied once (as a cached chunk
        # would be), instead of one after another through the cache.
        target = out
        if not out.flags.c_contiguous and last - first > 1:
            target = self.buffers.empty(count, info.dtype)
        direct: list[int] = []
        for k in range(first, last + 1):
            c_start, c_stop = info.chunk_span(k)
            lo, hi = max(start, c_start), min(end, c_stop)
            if (lo == c_start and hi == c_stop and target.flags.c_contiguous
                    and self._cache.get((index, k)) is None):
                direct.append(k)
                continue
            chunk = self._cached_chunk(index, k)
            target[lo - start:hi - start] = chunk[lo - c_start:hi - c_start]
            self._cache.consume((index, k), hi - lo, c_stop - c_start)
        if prefetch and end < info.length:
            self._prefetch(index, (end - 1) // cl + 1, prefetch)
        if direct:
            def decode_into(k: int) -> None:
                c_start, c_stop = info.chunk_span(k)
                self._decode_chunk(index, k, target[c_start - start:c_stop - start])

            if len(direct) == 1:
                decode_into(direct[0])
            else:
                for fut in [self._get_pool().submit(decode_into, k) for k in direct]:
                    fut.result()
        if target is not out:
            out[...] = target
            self.buffers.give(target)
        return out

    def mmap(self, index: int, start: int, count: int) -> np.ndarray | None:
        """A read-only array over the file's own bytes (raw sections of mappable files)."""
        info = self.infos[index]
        if info.codec != "raw" or self._mmap_region is None:
            return None
        itemsize = info.dtype.itemsize
        if index not in self._mapped_ok:
            if self._mmap_region(self.member_name(index), 0, 0) is None:
                return None
            self._verify_mapped(index)
        region = self._mmap_region(self.member_name(index), start * itemsize, count * itemsize)
        if region is None:
            return None
        return np.frombuffer(region, dtype=info.dtype, count=count)

    def _verify_mapped(self, index: int) -> None:
        """Hash every chunk of a mapped section once, straight from the mapping (no copy).

        The mapping shows the file as it is now, so the digests are checked on the same bytes
        the arrays will view (SECURITY.md rule 10); later writes to the file by someone else are
        outside what a reader can guard against.
        """
        offsets, digests = self._index(index)
        name = self.member_name(index)
        for k, digest in enumerate(digests):
            # Only mmap() calls this, after checking that the store has a mapping.
            region = cast(_MmapRegion, self._mmap_region)(name, offsets[k],
                                                          offsets[k + 1] - offsets[k])
            if region is None or hashlib.sha256(region).digest() != digest:
                raise IntegrityError(f"chunk {k} does not match its digest", name)
            del region
            # Hashing touched these pages; only the arrays that view them need them resident.
            self._release(name, offsets[k], offsets[k + 1] - offsets[k])
        with self._lock:
            self._mapped_ok.add(index)

    def _release(self, name: str, offset: int, length: int) -> None:
        if self._release_region is not None:
            self._release_region(name, offset, length)

    def release(self, index: int, start: int, count: int) -> None:
        """Drop the mapped pages of items ``[start, start + count)`` of a raw section from this
        process once their only user copied them (level 0: issue 13).  Arrays still viewing
        them stay valid: the pages are read again from the file if touched."""
        info = self.infos[index]
        if info.codec == "raw" and index in self._mapped_ok:
            itemsize = info.dtype.itemsize
            self._release(self.member_name(index), start * itemsize, count * itemsize)

    def verify(self, index: int) -> None:
        """Check every chunk of a section against its digest (no decompression)."""
        for k in range(self.infos[index].n_chunks):
            self._stored_chunk(index, k)
