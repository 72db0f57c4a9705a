"""A small UBJSON codec for XGBoost model documents.

XGBoost's JSON text prints float32 values as decimals; its UBJSON form (``save_raw("ubj")``)
stores them as raw big-endian float32, so it is the exact source for tree arrays.  Python has no
UBJSON reader, and only the subset XGBoost writes is needed:

- objects ``{`` ... ``}`` whose keys are length-prefixed UTF-8 strings;
- arrays ``[`` ... ``]``, count-prefixed arrays ``[#n`` and typed arrays ``[$t#n``;
- strings ``S``, integers ``i U I l L``, floats ``d D``, ``T F Z``.

Typed arrays become (native byte order) numpy arrays, so the dtype XGBoost stores survives the
round trip; untyped arrays become lists.  :func:`decode` only ever reads XGBoost's own output
(on save); :func:`encode` builds the document handed back to XGBoost on load from values the
loader already validated.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = ["decode", "encode", "TYPED_DTYPES"]

# Typed-array element markers and the numpy dtypes they hold (UBJSON is big-endian).
TYPED_DTYPES = {
    b"i": np.dtype("i1"), b"U": np.dtype("u1"), b"I": np.dtype(">i2"),
    b"l": np.dtype(">i4"), b"L": np.dtype(">i8"), b"d": np.dtype(">f4"), b"D": np.dtype(">f8"),
}
_MARKER_OF = {dt.newbyteorder("=").str if dt.itemsize > 1 else dt.str: m
              for m, dt in TYPED_DTYPES.items()}
_SCALARS = {b"i": struct.Struct(">b"), b"U": struct.Struct(">B"), b"I": struct.Struct(">h"),
            b"l": struct.Struct(">i"), b"L": struct.Struct(">q"), b"d": struct.Struct(">f"),
            b"D": struct.Struct(">d")}
_INT_MARKERS = b"iUIlL"


class _Reader:
    """Cursor over a UBJSON buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ValueError("truncated UBJSON document")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def marker(self) -> bytes:
        return bytes(self.take(1))

    def scalar(self, marker: bytes) -> Any:
        fmt = _SCALARS[marker]
        return fmt.unpack(self.take(fmt.size))[0]

    def length(self) -> int:
        marker = self.marker()
        if marker not in _INT_MARKERS or len(marker) != 1:
            raise ValueError(f"bad UBJSON length marker {marker!r}")
        n = self.scalar(marker)
        if n < 0:
            raise ValueError("negative UBJSON length")
        return n

    def text(self) -> str:
        return str(self.take(self.length()), "utf-8")


def decode(data: bytes) -> Any:
    """Parse a UBJSON document (the subset XGBoost writes) into Python values.

    Parameters
    ----------
    data : bytes
        The document, e.g. ``bytes(booster.save_raw("ubj"))``.

    Returns
    -------
    object
        dicts, lists, str, int, float, bool, None; typed arrays as numpy arrays in native byte
        order.
    """
    reader = _Reader(data)
    value = _value(reader, reader.marker())
    if reader.pos != len(reader.data):
        raise ValueError("trailing bytes after the UBJSON document")
    return value


def _value(r: _Reader, marker: bytes) -> Any:
    if marker in _SCALARS:
        value = r.scalar(marker)
        return float(value) if marker in b"dD" else value
    if marker == b"S":
        return r.text()
    if marker == b"{":
        return _object(r)
    if marker == b"[":
        return _array(r)
    if marker == b"T":
        return True
    if marker == b"F":
        return False
    if marker == b"Z":
        return None
    raise ValueError(f"unsupported UBJSON marker {marker!r}")


def _object(r: _Reader) -> dict:
    out: dict[str, Any] = {}
    while True:
        if r.data[r.pos:r.pos + 1] == b"}":
            r.pos += 1
            return out
        key = r.text()
        out[key] = _value(r, r.marker())


def _array(r: _Reader) -> Any:
    marker = r.marker()
    if marker == b"$":
        dtype = TYPED_DTYPES.get(r.marker())
        if dtype is None or r.marker() != b"#":
            raise ValueError("unsupported UBJSON typed array")
        n = r.length()
        raw = r.take(n * dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if marker == b"#":
        return [_value(r, r.marker()) for _ in range(r.length())]
    items = []
    while marker != b"]":
        items.append(_value(r, marker))
        marker = r.marker()
    return items


# -- encoding ---------------------------------------------------------------------------------

_LEN = struct.Struct(">q")


def encode(value: Any) -> bytearray:
    """Serialize Python values as UBJSON in XGBoost's own layout.

    Parameters
    ----------
    value : object
        dicts with str keys, lists, numpy arrays of the dtypes in :data:`TYPED_DTYPES` (any byte
        order), str, int, float, bool, None.

    Returns
    -------
    bytearray
        Ready for ``Booster.load_model``.
    """
    out = bytearray()
    _encode(value, out)
    return out


def _length(n: int, out: bytearray) -> None:
    out += b"L"
    out += _LEN.pack(n)


def _encode(value: Any, out: bytearray) -> None:
    t = type(value)
    if t is dict:
        out += b"{"
        for key, item in value.items():
            raw = key.encode("utf-8")
            _length(len(raw), out)
            out += raw
            _encode(item, out)
        out += b"}"
    elif t is list:
        out += b"[#"
        _length(len(value), out)
        for item in value:
            _encode(item, out)
    elif t is np.ndarray:
        _typed(value, out)
    elif t is str:
        raw = value.encode("utf-8")
        out += b"S"
        _length(len(raw), out)
        out += raw
    elif t is bool:
        out += b"T" if value else b"F"
    elif value is None:
        out += b"Z"
    elif t is int:
        _int(value, out)
    elif t is float:
        # XGBoost's numbers are float32; keep a wider value only when float32 would change it.
        narrow = np.float32(value)
        if float(narrow) == value or value != value:
            out += b"d" + _SCALARS[b"d"].pack(value)
        else:
            out += b"D" + _SCALARS[b"D"].pack(value)
    else:
        raise TypeError(f"cannot encode {t.__name__} as UBJSON")


def _int(value: int, out: bytearray) -> None:
    # XGBoost's writer excludes both limits of each width (127 is written as int16): copied so
    # that encode(decode(doc)) gives back XGBoost's exact bytes.
    for marker in (b"i", b"I", b"l", b"L"):
        fmt = _SCALARS[marker]
        bits = fmt.size * 8
        if -(1 << (bits - 1)) < value < (1 << (bits - 1)) - 1 or marker == b"L":
            out += marker + fmt.pack(value)
            return
    raise ValueError("integer does not fit int64")


def _typed(arr: np.ndarray, out: bytearray) -> None:
    key = arr.dtype.newbyteorder("=").str if arr.dtype.itemsize > 1 else arr.dtype.str
    marker = _MARKER_OF.get(key)
    if marker is None or arr.ndim != 1:
        raise TypeError(f"cannot encode a {arr.dtype} array of {arr.ndim} dims as UBJSON")
    out += b"[$" + marker + b"#"
    _length(arr.shape[0], out)
    out += np.ascontiguousarray(arr, dtype=TYPED_DTYPES[marker]).tobytes()
