"""Exact JSON for the corpus's inputs and expected outputs (no pickle, no ``np.load``).

Numeric arrays are their raw little-endian bytes in base64 with dtype and shape, so floats come
back bit for bit; object arrays are lists of plain values; DataFrames are their columns.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def encode(value: Any) -> Any:
    """A JSON-able, exact description of ``value``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, np.generic):
        return {"$scalar": encode(np.asarray(value))}
    if isinstance(value, np.generic):
        return {"$scalar": encode(np.asarray(value))}
    if type(value).__name__ == "DataFrame":
        return {"$frame": {str(k): encode(value[k].to_numpy()) for k in value.columns}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return {"$objects": [encode(v) for v in value.ravel().tolist()],
                    "shape": list(value.shape)}
        if value.dtype.kind == "U":
            return {"$strings": value.ravel().tolist(), "dtype": value.dtype.str,
                    "shape": list(value.shape)}
        little = value.astype(value.dtype.newbyteorder("<"), copy=False)
        return {"$array": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode(),
                "dtype": little.dtype.str, "shape": list(value.shape)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"$set": sorted(encode(v) for v in value)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) and not k.startswith("$") for k in value):
            raise TypeError("dict keys must be plain strings")
        return {k: encode(v) for k, v in value.items()}
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(doc: Any) -> Any:
    """The value :func:`encode` described (DataFrames need pandas)."""
    if doc is None or isinstance(doc, (bool, str)):
        return doc
    if isinstance(doc, list):
        return [decode(v) for v in doc]
    if not isinstance(doc, dict):
        raise TypeError(f"unexpected {type(doc).__name__}")
    if "$scalar" in doc:
        return decode(doc["$scalar"])[()]
    if "$frame" in doc:
        import pandas as pd

        return pd.DataFrame({k: decode(v) for k, v in doc["$frame"].items()})
    if "$objects" in doc:
        items = [decode(v) for v in doc["$objects"]]
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(doc["shape"])
    if "$strings" in doc:
        return np.array(doc["$strings"], dtype=doc["dtype"]).reshape(doc["shape"])
    if "$array" in doc:
        raw = base64.b64decode(doc["$array"])
        return np.frombuffer(raw, dtype=np.dtype(doc["dtype"])).reshape(doc["shape"]).copy()
    if "$tuple" in doc:
        return tuple(decode(v) for v in doc["$tuple"])
    if "$set" in doc:
        return {decode(v) for v in doc["$set"]}
    return {k: decode(v) for k, v in doc.items()}


def same(expected: Any, got: Any) -> bool:
    """Exact equality: dtype, shape and every value (NaN equal to NaN, -0.0 equal to 0.0)."""
    if isinstance(expected, tuple):
        return (isinstance(got, tuple) and len(got) == len(expected)
                and all(same(e, g) for e, g in zip(expected, got, strict=True)))
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.dtype != got.dtype or expected.shape != got.shape:
        return False
    if expected.dtype.kind == "O":
        return all(_same_item(e, g) for e, g in zip(expected.ravel(), got.ravel(), strict=True))
    return bool(np.array_equal(expected, got, equal_nan=expected.dtype.kind in "fc"))


def _same_item(e: Any, g: Any) -> bool:
    if type(e) is not type(g):
        return False
    if isinstance(e, float) and e != e:
        return g != g
    return bool(e == g)


RTOL, ATOL = 1e-9, 1e-12


def close(expected: Any, got: Any) -> bool:
    """Equal up to floating-point drift: dtype, shape and non-float values exact, floats within
    ``RTOL``/``ATOL`` with NaN and infinities in the same places.

    Another numpy (1.26 against 2.x) or BLAS computes ``exp``, ``log`` and sums in other
    orders: a model carried over exactly then predicts probabilities that differ in the last
    bits, as a pickle does.  Labels and integer outputs still have to be identical.
    """
    if isinstance(expected, tuple):
        return (isinstance(got, tuple) and len(got) == len(expected)
                and all(close(e, g) for e, g in zip(expected, got, strict=True)))
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.dtype != got.dtype or expected.shape != got.shape:
        return False
    if expected.dtype.kind not in "fc":
        return same(expected, got)
    return bool(np.allclose(expected, got, rtol=RTOL, atol=ATOL, equal_nan=True))
