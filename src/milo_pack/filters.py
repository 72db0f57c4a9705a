"""Array filters: reversible transforms applied to each chunk before zstd.

Like numcodecs' codecs, each filter is a small class with a class-level ``codec_id``, an
``encode``/``decode`` pair over 1-D arrays and a JSON ``get_config()``; the manifest lists a
section's filters as those configs, in the order they were applied when encoding.  Decoding
applies them in reverse.  The numeric loops live in the Cython module :mod:`milo_pack._arrays`;
this module only checks arguments and chains them.

Every filter gets ``start``, the position of the chunk's first element within its section, so a
chunk can be decoded on its own (random access, parallel decode).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import _arrays
from .errors import ArrayError, ManifestError, quote

__all__ = [
    "Filter",
    "RelativeIndex",
    "Delta",
    "Narrow",
    "Shuffle",
    "WholeFloat",
    "filters_from_config",
    "decode_chain",
    "INT_DTYPES",
]

INT_DTYPES = tuple(
    np.dtype(t).newbyteorder("<")
    for t in ("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8")
)


class Filter:
    """Base class of the chunk filters."""

    codec_id: ClassVar[str]

    def encoded_dtype(self, dtype: np.dtype) -> np.dtype:
        """Dtype of the output of :meth:`encode` for input of ``dtype``."""
        return dtype

    def encode(self, arr: np.ndarray, start: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, arr: np.ndarray, start: int,
               out: np.ndarray | None = None) -> np.ndarray:  # pragma: no cover - abstract
        """Invert :meth:`encode`; into ``out`` (contiguous, decoded dtype) when given."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The JSON form stored in the manifest."""
        return {"id": self.codec_id}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype: np.dtype, where: str) -> Filter:
        _expect_keys(config, {"id"}, where)
        return cls()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


def _expect_keys(config: dict[str, Any], keys: set[str], where: str) -> None:
    if set(config) != keys:
        raise ManifestError(
            f"filter {quote(config.get('id'))} needs keys {sorted(keys)}, got "
            f"{quote(sorted(map(str, config)))}",
            where,
        )


def _require_int_dtype(dtype: np.dtype, codec_id: str, where: str, kinds: str = "iu") -> None:
    if dtype.kind not in kinds or dtype.byteorder == ">":
        raise ManifestError(f"filter {codec_id!r} cannot apply to dtype {dtype.str}", where)


class RelativeIndex(Filter):
    """Store tree child indices relative to their node's position.

    ``x`` becomes ``x - p`` (shifted so that 0 stays free for ``sentinel``, the leaf marker),
    where ``p`` is the element's position in its section.  In a depth-first tree the left child
    is always the next node, so whole columns collapse to a couple of small values.
    """

    codec_id = "relidx"

    def __init__(self, sentinel: int = -1) -> None:
        self.sentinel = int(sentinel)

    def encode(self, arr: np.ndarray, start: int) -> np.ndarray:
        out = np.empty_like(arr)
        if not _arrays.relidx_encode(arr, out, start, self.sentinel):
            raise ArrayError("relative-index filter overflows this array")
        return out

    def decode(self, arr: np.ndarray, start: int, out: np.ndarray | None = None) -> np.ndarray:
        # ``arr`` may be narrower than ``out`` (int32 into int64): the kernel widens as it goes.
        if out is None:
            out = np.empty_like(arr)
        _arrays.relidx_decode(arr, out, start, self.sentinel)
        return out

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "sentinel": self.sentinel}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype: np.dtype, where: str) -> Filter:
        _expect_keys(config, {"id", "sentinel"}, where)
        _require_int_dtype(dtype, cls.codec_id, where, kinds="i")
        if dtype.itemsize not in (4, 8):
            raise ManifestError(f"filter 'relidx' needs int32 or int64, not {dtype.str}", where)
        sentinel = config["sentinel"]
        info = np.iinfo(dtype)
        if type(sentinel) is not int or not info.min <= sentinel <= info.max:
            raise ManifestError("filter 'relidx' sentinel must be an int of the dtype", where)
        return cls(sentinel)


class Delta(Filter):
    """Differences between neighbours, for monotone integer arrays (offsets, ``indptr``)."""

    codec_id = "delta"

    def encode(self, arr: np.ndarray, start: int) -> np.ndarray:
        out = np.empty_like(arr)
        _arrays.delta_encode(arr, out)
        return out

    def decode(self, arr: np.ndarray, start: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty_like(arr)
        _arrays.delta_decode(arr, out)
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype: np.dtype, where: str) -> Filter:
        _expect_keys(config, {"id"}, where)
        _require_int_dtype(dtype, cls.codec_id, where)
        return cls()


class _Cast(Filter):
    """Store the values in another dtype (``dtype``); decoding casts back to ``wide``."""

    def __init__(self, dtype: np.dtype | str, wide: np.dtype | str) -> None:
        self.dtype = np.dtype(dtype)
        self.wide = np.dtype(wide)

    def encoded_dtype(self, dtype: np.dtype) -> np.dtype:
        return self.dtype

    def decode(self, arr: np.ndarray, start: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return arr.astype(self.wide)
        np.copyto(out, arr, casting="unsafe")  # widening: exact by construction
        return out

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "dtype": self.dtype.str}


class Narrow(_Cast):
    """Store integers in a smaller integer dtype; decoding widens back exactly.

    The encoder checks the range; a decoder widening to the section dtype cannot lose values.
    """

    codec_id = "narrow"

    def encode(self, arr: np.ndarray, start: int) -> np.ndarray:
        if arr.size:
            lo, hi = _arrays.minmax(arr)
            info = np.iinfo(self.dtype)
            if lo < info.min or hi > info.max:
                raise ArrayError(f"values do not fit the narrowed dtype {self.dtype.str}")
        return arr.astype(self.dtype)

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype: np.dtype, where: str) -> Filter:
        _expect_keys(config, {"id", "dtype"}, where)
        _require_int_dtype(dtype, cls.codec_id, where)
        narrow = config["dtype"]
        allowed = {d.str: d for d in INT_DTYPES}
        if not isinstance(narrow, str) or narrow not in allowed:
            raise ManifestError(f"filter 'narrow' has bad dtype {quote(narrow)}", where)
        target = allowed[narrow]
        # Widening must be exact: the narrow type's range must sit inside the wide one's.
        t_info, w_info = np.iinfo(target), np.iinfo(dtype)
        if target.itemsize >= dtype.itemsize or t_info.min < w_info.min or t_info.max > w_info.max:
            raise ManifestError(f"filter 'narrow' cannot store {dtype.str} as {narrow}", where)
        return cls(target, dtype)


class WholeFloat(_Cast):
    """Floats that are all whole numbers, stored as integers of ``dtype``.

    Sample counts and bootstrap weights are floats holding integers; as integers they narrow and
    compress far better.  The encoder refuses any value it cannot restore bit for bit (fractions,
    NaN, infinities, negative zero).
    """

    codec_id = "wholefloat"

    def encode(self, arr: np.ndarray, start: int) -> np.ndarray:
        out = arr.astype(self.dtype)
        if not np.array_equal(out.astype(arr.dtype).view(np.uint8), arr.view(np.uint8)):
            raise ArrayError(f"floats are not all whole numbers that fit {self.dtype.str}")
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype: np.dtype, where: str) -> Filter:
        _expect_keys(config, {"id", "dtype"}, where)
        if dtype.kind != "f" or dtype.byteorder == ">":
            raise ManifestError(f"filter 'wholefloat' cannot apply to dtype {dtype.str}", where)
        allowed = {d.str: d for d in INT_DTYPES}
        target = allowed.get(config["dtype"]) if isinstance(config["dtype"], str) else None
        if target is None:
            raise ManifestError(f"filter 'wholefloat' has bad dtype {quote(config['dtype'])}",
                                where)
        return cls(target, dtype)


class Shuffle(Filter):
    """Byte shuffle (byte ``j`` of every element together), as in blosc and numcodecs.

    It helps smooth numeric data such as training matrices; on tree thresholds and class
    fractions it makes files larger, so the writer only keeps it where it measured a gain.
    """

    codec_id = "shuffle"

    def __init__(self, elemsize: int) -> None:
        self.elemsize = int(elemsize)

    def encode(self, arr: np.ndarray, start: int) -> np.ndarray:
        raw = arr.view(np.uint8).reshape(-1)
        out = np.empty_like(raw)
        _arrays.shuffle(raw, out, self.elemsize)
        return out.view(arr.dtype)

    def decode(self, arr: np.ndarray, start: int, out: np.ndarray | None = None) -> np.ndarray:
        raw = arr.view(np.uint8).reshape(-1)
        if out is None:
            out = np.empty(arr.shape, arr.dtype)
        _arrays.unshuffle(raw, out.view(np.uint8).reshape(-1), self.elemsize)
        return out

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "elemsize": self.elemsize}

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype: np.dtype, where: str) -> Filter:
        _expect_keys(config, {"id", "elemsize"}, where)
        if config["elemsize"] != dtype.itemsize or not 1 <= dtype.itemsize <= 16:
            raise ManifestError("filter 'shuffle' elemsize must equal the itemsize", where)
        return cls(dtype.itemsize)


FILTERS: dict[str, type[Filter]] = {
    cls.codec_id: cls for cls in (RelativeIndex, Delta, Narrow, WholeFloat, Shuffle)
}


def filters_from_config(configs: Any, dtype: np.dtype, where: str) -> list[Filter]:
    """Build and check a section's filter chain from its manifest configs.

    Parameters
    ----------
    configs : list of dict
        The ``filters`` list of a section entry.
    dtype : numpy.dtype
        The section's (decoded) dtype; each filter is checked against the dtype it sees.
    where : str
        Location for error messages.
    """
    if not isinstance(configs, list):
        raise ManifestError("filters must be a list", where)
    chain: list[Filter] = []
    current = dtype
    for i, config in enumerate(configs):
        at = f"{where}.filters[{i}]"
        if not isinstance(config, dict) or not isinstance(config.get("id"), str):
            raise ManifestError("a filter must be an object with a string 'id'", at)
        cls = FILTERS.get(config["id"])
        if cls is None:
            raise ManifestError(f"unknown filter {quote(config['id'])}", at)
        if chain and isinstance(chain[-1], Shuffle):
            raise ManifestError("shuffle must be the last filter", at)
        f = cls.from_config(config, current, at)
        if any(type(g) is cls for g in chain):
            raise ManifestError(f"filter {cls.codec_id!r} listed twice", at)
        chain.append(f)
        current = f.encoded_dtype(current)
    return chain


def decode_chain(chain: list[Filter], arr: np.ndarray, start: int, out: np.ndarray) -> np.ndarray:
    """Undo ``chain`` on one encoded chunk ``arr``, the last step writing into ``out``.

    Decoding straight into the destination and letting the relative-index kernel read narrowed
    ints itself (no widened copy in between) keeps a chunk's decode to its encoded buffer plus
    its destination: a forest load decodes ~10 sections side by side, so every copy counts.
    """
    steps = chain[::-1]
    for i, f in enumerate(steps):
        last = i == len(steps) - 1
        if (isinstance(f, Narrow) and not last and isinstance(steps[i + 1], RelativeIndex)
                and f.dtype.kind == "i" and f.dtype.itemsize >= 4):
            continue
        arr = f.decode(arr, start, out if last else None)
    if arr is not out:
        out[...] = arr
    return out
