"""scipy.sparse matrices and arrays in every format, structure checked on load.

Compressed formats (csr, csc, bsr) store ``data``, ``indices`` and ``indptr``; coo stores
``data``, ``row`` and ``col``; dia stores ``data`` and ``offsets``; lil and dok are stored as csr
and converted back.  Index dtypes are preserved exactly (scipy's constructors may narrow them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _arrays
from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError
from ..registry import Handler, LoadFn, Registry

_COMPRESSED = ("data", "indices", "indptr")


def _save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    fmt = obj.format
    if fmt in ("lil", "dok"):
        obj = obj.tocsr()
        fmt = "csr"
    fields: dict[str, Any] = {"shape": [int(n) for n in obj.shape]}
    names = {"csr": _COMPRESSED, "csc": _COMPRESSED, "bsr": _COMPRESSED,
             "coo": ("data", "row", "col"), "dia": ("data", "offsets")}[fmt]
    for name in names:
        fields[name] = ctx.encode(np.asarray(getattr(obj, name)), join_path(path, name))
    return fields


def _check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    shape = node["shape"]
    if (not isinstance(shape, list) or len(shape) != 2
            or any(type(n) is not int or not 0 <= n <= ctx.limits.max_dim for n in shape)):
        raise ManifestError("a sparse matrix shape is two non-negative ints", path)


def _arrays_of(node: dict[str, Any], names: tuple[str, ...], ctx: LoadContext, path: str
               ) -> list[np.ndarray]:
    result = []
    for name in names:
        arr = ctx.decode(node[name], join_path(path, name))
        if not isinstance(arr, np.ndarray) or arr.dtype.kind == "O":
            raise ManifestError(f"sparse {name} must be a numeric array", path)
        result.append(arr)
    return result


def _check_index(arr: np.ndarray, upper: int, what: str, path: str) -> None:
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise InvariantError(f"{what} must be a 1-D integer array", path)
    bad = _arrays.check_indices(arr, upper)
    if bad != -1:
        raise InvariantError(f"{what}[{bad}] = {arr[bad]} is outside [0, {upper})", path)


def _check_compressed(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_major: int,
                      n_minor: int, nnz_blocks: int, path: str) -> None:
    if indptr.dtype.kind not in "iu" or indptr.ndim != 1 or indptr.shape[0] != n_major + 1:
        raise InvariantError(f"indptr must have {n_major + 1} integer entries", path)
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or indices.shape[0] != nnz_blocks:
        raise InvariantError("indptr must start at 0 and end at the number of entries", path)
    bad = _arrays.check_monotone(indptr)
    if bad != -1:
        raise InvariantError(f"indptr decreases at {bad}", path)
    _check_index(indices, n_minor, "indices", path)


def _loader(cls: type[Any]) -> LoadFn:
    fmt = cls((1, 1)).format
    kind = "array" if cls.__name__.endswith("_array") else "matrix"
    target = "csr" if fmt in ("lil", "dok") else fmt
    build = getattr(sp, f"{target}_{kind}")

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        shape = tuple(node["shape"])
        n_rows, n_cols = shape
        if target in ("csr", "csc"):
            data, indices, indptr = _arrays_of(node, _COMPRESSED, ctx, path)
            n_major, n_minor = (n_rows, n_cols) if target == "csr" else (n_cols, n_rows)
            if data.ndim != 1 or data.shape[0] != indices.shape[0]:
                raise InvariantError("data and indices differ in length", path)
            _check_compressed(data, indices, indptr, n_major, n_minor, data.shape[0], path)
            result = build((data, indices, indptr), shape=shape)
            result.indices, result.indptr = indices, indptr
        elif target == "bsr":
            data, indices, indptr = _arrays_of(node, _COMPRESSED, ctx, path)
            if data.ndim != 3 or data.shape[0] != indices.shape[0]:
                raise InvariantError("bsr data must be (blocks, R, C) matching indices", path)
            r, c = data.shape[1:]
            if r == 0 or c == 0 or n_rows % r or n_cols % c:
                raise InvariantError("bsr block size does not divide the shape", path)
            _check_compressed(data, indices, indptr, n_rows // r, n_cols // c,
                              data.shape[0], path)
            result = build((data, indices, indptr), shape=shape)
            result.indices, result.indptr = indices, indptr
        elif target == "coo":
            data, row, col = _arrays_of(node, ("data", "row", "col"), ctx, path)
            if not data.ndim == 1 or not data.shape == row.shape == col.shape:
                raise InvariantError("coo data, row and col differ in length", path)
            _check_index(row, n_rows, "row", path)
            _check_index(col, n_cols, "col", path)
            result = build((data, (row, col)), shape=shape)
            result.row, result.col = row, col
        else:  # dia
            data, offsets = _arrays_of(node, ("data", "offsets"), ctx, path)
            if data.ndim != 2 or offsets.ndim != 1 or data.shape[0] != offsets.shape[0]:
                raise InvariantError("dia data must be (n_offsets, length)", path)
            if offsets.dtype.kind not in "iu" or len(np.unique(offsets)) != len(offsets):
                raise InvariantError("dia offsets must be distinct integers", path)
            result = build((data, offsets), shape=shape)
        if fmt == "lil":
            result = result.tolil()
        elif fmt == "dok":
            result = result.todok()
        return result

    return load


def register(registry: Registry) -> None:
    F = frozenset
    keys = F({"shape", "data", "indices", "indptr", "row", "col", "offsets"})
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok"):
        for kind in ("matrix", "array"):
            cls = getattr(sp, f"{fmt}_{kind}", None)
            if cls is None:  # pragma: no cover - old scipy without sparse arrays
                continue
            registry.add(Handler(f"scipy.sparse.{fmt}_{kind}", _save, _loader(cls), keys,
                                 F({"shape", "data"}), check=_check, types=(cls,)))
