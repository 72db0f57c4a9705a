"""numpy: arrays of every kind, scalars, dtypes, masked arrays and random generators.

No array ever goes through pickle.  Plain dtypes are stored as bytes (inline when tiny); object
arrays hold encodable items, or a string table when they are long lists of strings; structured
arrays are split into one plain array per field (so tree-node records compress column by column).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .. import _arrays
from ..codec import check_dtype
from ..engine import (
    CheckContext,
    LoadContext,
    SaveContext,
    check_array_node,
    check_plain_array,
    float_token,
    join_path,
)
from ..errors import ArrayError, InvariantError, LimitError, ManifestError, UnsupportedTypeError
from ..registry import Handler, Registry

# Object arrays of more strings than this become a string table in sections.
STRING_TABLE_MIN = 64
# A record's item: numpy's own limit on a dtype's size is far above anything a model holds.
_MAX_RECORD_ITEMSIZE = 1 << 24
_ARRAY_KEYS = frozenset({"dtype", "shape", "data", "fill", "section", "start", "order"})

if TYPE_CHECKING:  # pragma: no cover
    from types import MappingProxyType

    # An entry of a structured dtype's ``fields``: (dtype, offset) or (dtype, offset, title).
    RecordField = tuple[np.dtype[Any], int] | tuple[np.dtype[Any], int, Any]


# -- plain arrays -----------------------------------------------------------------------------


def _save_plain(obj: np.ndarray, ctx: SaveContext, path: str) -> dict[str, Any]:
    return ctx.array_fields(obj, path)


def _load_plain(node: dict[str, Any], ctx: LoadContext, path: str) -> np.ndarray:
    return ctx.array(node, path)


# -- object arrays ----------------------------------------------------------------------------


def _shape(node: dict[str, Any], ctx: CheckContext, path: str) -> tuple[int, ...]:
    shape = node.get("shape")
    if (not isinstance(shape, list) or len(shape) > ctx.limits.max_ndim
            or any(type(n) is not int or n < 0 or n > ctx.limits.max_dim for n in shape)):
        raise ArrayError("shape must be a short list of non-negative ints", path)
    if math.prod(max(n, 1) for n in shape) > ctx.limits.max_array_bytes // 8:
        # numpy refuses such shapes even when a zero dimension makes them empty.
        raise LimitError(f"shape {shape[:8]} exceeds max_array_bytes", path)
    return tuple(shape)


def _save_object(obj: np.ndarray, ctx: SaveContext, path: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"shape": list(obj.shape)}
    flat = obj.reshape(-1, order="C") if obj.flags.c_contiguous else obj.ravel()
    if obj.size >= STRING_TABLE_MIN and all(type(v) is str for v in flat):
        offsets, blob = _arrays.string_table_encode(flat)
        fields["strings"] = {
            "offsets": ctx.array(offsets, join_path(path, "offsets"), group="strings.offsets"),
            "utf8": ctx.array(np.frombuffer(blob, np.uint8), join_path(path, "utf8"),
                              group="strings.utf8"),
        }
    else:
        fields["items"] = [ctx.encode(v, f"{path}[{i}]") for i, v in enumerate(flat)]
    return fields


def _check_object(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    shape = _shape(node, ctx, path)
    count = math.prod(shape)
    if ("items" in node) == ("strings" in node):
        raise ManifestError("an object array has exactly one of 'items' or 'strings'", path)
    if "items" in node:
        if not isinstance(node["items"], list) or len(node["items"]) != count:
            raise ArrayError(f"object array needs {count} items", path)
        return
    table = node["strings"]
    if not isinstance(table, dict) or set(table) != {"offsets", "utf8"}:
        raise ManifestError("a string table has exactly 'offsets' and 'utf8'", path)
    offsets, utf8 = table["offsets"], table["utf8"]
    check_array_node(offsets, join_path(path, "offsets"), ctx)
    check_array_node(utf8, join_path(path, "utf8"), ctx)
    if offsets.get("dtype") != "<i8" or offsets.get("shape") != [count + 1]:
        raise ArrayError(f"string offsets must be int64 of length {count + 1}", path)
    if utf8.get("dtype") != "|u1" or len(utf8.get("shape")) != 1:
        raise ArrayError("string data must be 1-D uint8", path)


def _load_object(node: dict[str, Any], ctx: LoadContext, path: str) -> np.ndarray:
    shape = tuple(node["shape"])
    result = np.empty(shape, dtype=object)
    ctx.register(node, result)
    flat = result.reshape(-1)
    if "items" in node:
        for i, item in enumerate(node["items"]):
            flat[i] = ctx.decode(item, f"{path}[{i}]")
        return result
    table = node["strings"]
    offsets = ctx.array(table["offsets"], join_path(path, "offsets"))
    utf8 = ctx.array(table["utf8"], join_path(path, "utf8"))
    try:
        strings = _arrays.string_table_decode(offsets, utf8.tobytes())
    except ArrayError as exc:
        raise ArrayError(exc.message, path) from None
    flat[:] = strings
    return result


# -- structured arrays ------------------------------------------------------------------------


def _names_problem(names: list[Any]) -> str | None:
    if not all(isinstance(n, str) and n and not (n.startswith("__") and n.endswith("__"))
               for n in names) or len(set(names)) != len(names):
        return "record field names must be distinct non-empty strings, not dunders"
    return None


def _overlap(spans: list[tuple[int, int]]) -> bool:
    spans = sorted(spans)
    return any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False))


def record_spec(dtype: np.dtype, path: str = "") -> dict[str, Any]:
    """The manifest form of a structured dtype of plain fields (inverse of ``record_dtype``).

    Refuses at dump what :func:`record_dtype` would refuse at load: nothing is written that
    cannot be read back.
    """
    # Callers pass structured dtypes (fields checked by resolve_array, or a tree's node dtype).
    names = cast("tuple[str, ...]", dtype.names)
    dtype_fields = cast("MappingProxyType[str, RecordField]", dtype.fields)
    problem = _names_problem(list(names))
    if problem:
        raise UnsupportedTypeError(problem, path)
    if dtype.itemsize > _MAX_RECORD_ITEMSIZE:
        raise UnsupportedTypeError(f"record items of {dtype.itemsize} bytes", path)
    formats: list[str] = []
    offsets: list[int] = []
    for name in names:
        fdtype, offset = dtype_fields[name][:2]
        if fdtype.fields is not None or fdtype.subdtype is not None or fdtype.kind == "O":
            raise UnsupportedTypeError(f"structured field {name!r} has dtype {fdtype}", path)
        if fdtype.byteorder == "=":
            fdtype = fdtype.newbyteorder("<" if np.little_endian else ">")
        formats.append(fdtype.str)
        offsets.append(int(offset))
    if _overlap([(o, o + dtype_fields[n][0].itemsize) for n, o in zip(names, offsets,
                                                                       strict=True)]):
        raise UnsupportedTypeError("structured array with overlapping fields", path)
    return {"names": list(names), "formats": formats, "offsets": offsets,
            "itemsize": dtype.itemsize}


def _save_record(obj: np.ndarray, ctx: SaveContext, path: str) -> dict[str, Any]:
    spec = record_spec(obj.dtype, path)
    fields = {
        name: ctx.array(obj[name], join_path(path, name), group=f"fields.{name}",
                        hint="children" if name in ("left", "right") else None)
        for name in spec["names"]
    }
    return {"shape": list(obj.shape), "dtype": spec, "fields": fields}


def record_dtype(spec: Any, path: str) -> np.dtype:
    """Rebuild a structured dtype from its manifest form, checking every part.

    Accepts every dtype :func:`record_spec` writes (which refuses the rest at dump): distinct
    non-dunder field names, fields that do not overlap, any item size up to 16 MiB (the
    array's bytes are budgeted by the caller).
    """
    if not isinstance(spec, dict) or set(spec) != {"names", "formats", "offsets", "itemsize"}:
        raise ManifestError("a record dtype has names, formats, offsets and itemsize", path)
    names, formats, offsets, itemsize = (spec[k] for k in ("names", "formats", "offsets",
                                                           "itemsize"))
    if (not isinstance(names, list) or not isinstance(formats, list)
            or not isinstance(offsets, list) or not names
            or not len(names) == len(formats) == len(offsets)
            or type(itemsize) is not int or not 0 < itemsize <= _MAX_RECORD_ITEMSIZE):
        raise ManifestError("malformed record dtype", path)
    problem = _names_problem(names)
    if problem:
        raise ManifestError(problem, path)
    dtypes = [check_dtype(f, path) for f in formats]
    spans = []
    for off, dt in zip(offsets, dtypes, strict=True):
        if type(off) is not int or off < 0 or off + dt.itemsize > itemsize:
            raise ManifestError("record field offset out of range", path)
        spans.append((off, off + dt.itemsize))
    if _overlap(spans):
        raise ManifestError("record fields overlap", path)
    try:
        return np.dtype({"names": names, "formats": dtypes, "offsets": offsets,
                         "itemsize": itemsize})
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"invalid record dtype: {exc}", path) from None


def _check_record(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    shape = _shape(node, ctx, path)
    dtype = record_dtype(node["dtype"], path)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > ctx.limits.max_array_bytes:
        raise LimitError(f"record array of {nbytes} bytes exceeds max_array_bytes", path)
    ctx.total_bytes += nbytes
    if ctx.total_bytes > ctx.limits.max_total_bytes:
        raise LimitError("arrays add up to more than max_total_bytes", path)
    # record_dtype built a structured dtype (from a non-empty list of names).
    names = cast("tuple[str, ...]", dtype.names)
    dtype_fields = cast("MappingProxyType[str, RecordField]", dtype.fields)
    fields = node["fields"]
    if not isinstance(fields, dict) or list(fields) != list(names):
        raise ManifestError("record 'fields' must list the dtype's fields in order", path)
    for name, fnode in fields.items():
        where = join_path(path, name)
        check_array_node(fnode, where, ctx)
        if fnode["dtype"] != dtype_fields[name][0].str or tuple(fnode["shape"]) != shape:
            raise ArrayError("record field does not match the record dtype", where)


def _load_record(node: dict[str, Any], ctx: LoadContext, path: str) -> np.ndarray:
    dtype = record_dtype(node["dtype"], path)
    result = np.zeros(tuple(node["shape"]), dtype=dtype)
    for name, fnode in node["fields"].items():
        ctx.array(fnode, join_path(path, name), out=result[name])
    return result


# -- masked arrays ----------------------------------------------------------------------------


def _save_masked(obj: np.ma.MaskedArray, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {
        "data": ctx.encode(np.asarray(obj.data), join_path(path, "data")),
        "mask": ctx.encode(np.ma.getmaskarray(obj), join_path(path, "mask")),
        "fill_value": ctx.encode(obj.fill_value, join_path(path, "fill_value")),
    }


def _load_masked(node: dict[str, Any], ctx: LoadContext, path: str) -> np.ma.MaskedArray:
    data = ctx.decode(node["data"], join_path(path, "data"))
    mask = ctx.decode(node["mask"], join_path(path, "mask"))
    if not isinstance(data, np.ndarray) or not isinstance(mask, np.ndarray):
        raise ManifestError("masked array data and mask must be arrays", path)
    if mask.dtype != np.bool_ or mask.shape != data.shape:
        raise InvariantError("masked array mask must be boolean of the data's shape", path)
    result = np.ma.MaskedArray(data, mask=mask)
    fill = ctx.decode(node["fill_value"], join_path(path, "fill_value"))
    try:
        result.fill_value = fill
    except (TypeError, ValueError):
        raise InvariantError("masked array fill_value does not fit its dtype", path) from None
    return result


# -- numpy.matrix -----------------------------------------------------------------------------
# What a mean over a scipy.sparse matrix returns (BisectingKMeans fitted on sparse data holds
# one): its data as a plain 2-D array, rebuilt as a matrix viewing it.


def _save_matrix(obj: np.matrix, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"array": ctx.encode(np.asarray(obj), join_path(path, "array"))}


def _load_matrix(node: dict[str, Any], ctx: LoadContext, path: str) -> np.matrix:
    arr = ctx.decode(node["array"], join_path(path, "array"))
    if type(arr) is not np.ndarray or arr.ndim != 2 or arr.dtype.kind == "O":
        raise InvariantError("a matrix holds a plain 2-D array", path)
    return np.asmatrix(arr)


# A memory-mapped array (a model loaded by joblib with mmap_mode): its data, loaded back as an
# np.memmap that owns no file, as unpickling one gives.


def _save_memmap(obj: np.memmap, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"array": ctx.encode(obj.view(np.ndarray), join_path(path, "array"))}


def _load_memmap(node: dict[str, Any], ctx: LoadContext, path: str) -> np.memmap:
    arr = ctx.decode(node["array"], join_path(path, "array"))
    if type(arr) is not np.ndarray or arr.dtype.kind == "O":
        raise InvariantError("a memmap holds a plain array", path)
    return arr.view(np.memmap)


# -- scalars and dtypes -----------------------------------------------------------------------


def _scalar_value(value: np.generic) -> Any:
    kind = value.dtype.kind
    if kind == "f":
        return float_token(float(value))
    if kind == "c":
        return [float_token(value.real.item()), float_token(value.imag.item())]
    if kind == "S":
        return value.item().decode("latin-1")
    if kind in "Mm":
        return int(value.view(np.int64))
    return value.item()


def _save_scalar(obj: np.generic, ctx: SaveContext, path: str) -> dict[str, Any]:
    dtype = obj.dtype
    if dtype.kind not in "biufcUSMm":
        raise UnsupportedTypeError(f"numpy scalar of dtype {dtype}", path)
    if dtype.byteorder == "=":
        dtype = dtype.newbyteorder("<" if np.little_endian else ">")
    return {"dtype": dtype.str, "value": _scalar_value(obj)}


def _check_scalar(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    check_array_node({"dtype": node["dtype"], "shape": [], "data": [node["value"]]}, path, ctx)


def _load_scalar(node: dict[str, Any], ctx: LoadContext, path: str) -> np.generic:
    arr = ctx.array({"dtype": node["dtype"], "shape": [1], "data": [node["value"]]}, path)
    value: np.generic = arr[0]  # an item of a 1-D array of a non-object dtype: a numpy scalar
    return value


def _save_dtype(obj: np.dtype, ctx: SaveContext, path: str) -> dict[str, Any]:
    if obj.kind == "O":
        return {"dtype": "object"}
    if obj.fields is not None or obj.subdtype is not None or obj.kind not in "biufcUSMm":
        raise UnsupportedTypeError(f"dtype {obj} cannot be saved", path)
    return {"dtype": obj.str}


def _check_dtype_node(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if node["dtype"] != "object":
        check_dtype(node["dtype"], path)


def _load_dtype(node: dict[str, Any], ctx: LoadContext, path: str) -> np.dtype:
    return np.dtype(object) if node["dtype"] == "object" else np.dtype(node["dtype"])


# -- random generators ------------------------------------------------------------------------

_BIT_GENERATORS = {
    cls.__name__: cls
    for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox,
                np.random.SFC64)
}


def _save_random_state(obj: np.random.RandomState, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"state": ctx.encode(obj.get_state(legacy=False), join_path(path, "state"))}


def _load_random_state(node: dict[str, Any], ctx: LoadContext, path: str) -> np.random.RandomState:
    state = ctx.decode(node["state"], join_path(path, "state"))
    result = np.random.RandomState()
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "MT19937":
            raise ValueError("RandomState state must be an MT19937 state dict")
        result.set_state(state)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise InvariantError(f"invalid RandomState state: {exc}", path) from None
    return result


def _bit_generator(name: Any, state: Any, path: str, **seed: Any) -> np.random.BitGenerator:
    """Bit generator ``name`` with ``state``; ``seed_seq=`` (if given) is the SeedSequence (or
    None) it keeps for ``spawn()``."""
    cls = _BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvariantError(f"unknown bit generator {name!r}", path)
    seed_seq = seed.get("seed_seq")
    if seed_seq is not None and type(seed_seq) is not np.random.SeedSequence:
        raise InvariantError("seed_seq must be a SeedSequence", path)
    try:
        bitgen = cls(seed_seq)
        if "seed_seq" in seed and seed_seq is None:
            # Seeded the legacy way (RandomState's MT19937): it has no SeedSequence.
            if not hasattr(bitgen, "_legacy_seeding"):
                raise ValueError(f"{name} always has a SeedSequence")
            bitgen._legacy_seeding(0)
        bitgen.state = state
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise InvariantError(f"invalid {name} state: {exc}", path) from None
    return bitgen


def _save_seed_sequence(obj: np.random.SeedSequence, ctx: SaveContext, path: str) -> dict[str, Any]:
    if not 4 <= obj.pool_size <= _MAX_POOL_SIZE:  # what the loader accepts, nothing more
        raise UnsupportedTypeError(f"SeedSequence of pool_size {obj.pool_size} (at most "
                                   f"{_MAX_POOL_SIZE})", path)
    return {"entropy": ctx.encode(obj.entropy, join_path(path, "entropy")),
            "spawn_key": ctx.encode(tuple(obj.spawn_key), join_path(path, "spawn_key")),
            "pool_size": ctx.encode(obj.pool_size, join_path(path, "pool_size")),
            "n_children_spawned": ctx.encode(obj.n_children_spawned,
                                             join_path(path, "n_children_spawned"))}


# The pool is allocated from pool_size: bounded (numpy's default is 4 words).
_MAX_POOL_SIZE = 1 << 16


def _load_seed_sequence(node: dict[str, Any], ctx: LoadContext,
                        path: str) -> np.random.SeedSequence:
    fields = {k: ctx.decode(node[k], join_path(path, k))
              for k in ("entropy", "spawn_key", "pool_size", "n_children_spawned")}
    pool_size, spawned = fields["pool_size"], fields["n_children_spawned"]
    if type(pool_size) is not int or not 4 <= pool_size <= _MAX_POOL_SIZE:
        raise InvariantError(f"SeedSequence pool_size must be an int in [4, {_MAX_POOL_SIZE}]",
                             path)
    if type(spawned) is not int or spawned < 0:
        raise InvariantError("SeedSequence n_children_spawned must be a non-negative int", path)
    if type(fields["spawn_key"]) is not tuple:
        raise InvariantError("SeedSequence spawn_key must be a tuple", path)
    try:
        seq = np.random.SeedSequence(fields["entropy"], spawn_key=fields["spawn_key"],
                                     pool_size=pool_size, n_children_spawned=spawned)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvariantError(f"invalid SeedSequence: {exc}", path) from None
    ctx.register(node, seq)
    return seq


def _seed_seq_node(bitgen: np.random.BitGenerator, ctx: SaveContext, path: str) -> Any:
    # The SeedSequence a bit generator was seeded from: `spawn()` draws children from it.
    seed_seq = getattr(bitgen, "seed_seq", None)
    if seed_seq is not None and type(seed_seq) is not np.random.SeedSequence:
        raise UnsupportedTypeError(
            f"{type(bitgen).__name__} seeded from a {type(seed_seq).__name__}", path)
    return ctx.encode(seed_seq, join_path(path, "seed_seq"))


def _bitgen_with_seed(name: Any, node: dict[str, Any], ctx: LoadContext, path: str
                      ) -> np.random.BitGenerator:
    """A bit generator rebuilt from its state, seeded from its own SeedSequence when saved."""
    state = ctx.decode(node["state"], join_path(path, "state"))
    if "seed_seq" not in node:  # files written before seed sequences were kept
        return _bit_generator(name, state, path)
    seed_seq = ctx.decode(node["seed_seq"], join_path(path, "seed_seq"))
    return _bit_generator(name, state, path, seed_seq=seed_seq)


def _save_generator(obj: np.random.Generator, ctx: SaveContext, path: str) -> dict[str, Any]:
    bitgen = obj.bit_generator
    if type(bitgen).__name__ not in _BIT_GENERATORS:
        raise UnsupportedTypeError(f"bit generator {type(bitgen).__name__}", path)
    return {"bit_generator": type(bitgen).__name__,
            "state": ctx.encode(bitgen.state, join_path(path, "state")),
            "seed_seq": _seed_seq_node(bitgen, ctx, path)}


def _load_generator(node: dict[str, Any], ctx: LoadContext, path: str) -> np.random.Generator:
    return np.random.Generator(_bitgen_with_seed(node["bit_generator"], node, ctx, path))


def _save_bitgen(obj: np.random.BitGenerator, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"state": ctx.encode(obj.state, join_path(path, "state")),
            "seed_seq": _seed_seq_node(obj, ctx, path)}


def _bitgen_loader(name: str
                   ) -> Callable[[dict[str, Any], LoadContext, str], np.random.BitGenerator]:
    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> np.random.BitGenerator:
        return _bitgen_with_seed(name, node, ctx, path)

    return load


# -- views ------------------------------------------------------------------------------------
# Arrays that view another array of the same object state (Birch's centroids_, see
# handlers/sklearn.encode_state): ``base[start:stop:step, ...]``, so they come back sharing memory.


def _check_view(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    index, shape = node["index"], node["shape"]
    ok = (isinstance(index, list) and isinstance(shape, list) and len(index) == len(shape)
          and len(index) <= ctx.limits.max_ndim
          and all(isinstance(t, list) and len(t) == 3 and all(type(v) is int for v in t)
                  and 0 <= t[0] <= t[1] and t[2] > 0 for t in index)
          and all(type(n) is int and n >= 0 for n in shape))
    flip = node.get("flip", [])
    if not ok or not (isinstance(flip, list) and len(set(flip)) == len(flip) and all(
            type(a) is int and 0 <= a < len(index) for a in flip)):
        raise ManifestError("a view has one [start, stop, step] per axis, a shape and the "
                            "distinct axes it flips", path)


def _load_view(node: dict[str, Any], ctx: LoadContext, path: str) -> np.ndarray:
    base = ctx.decode(node["base"], join_path(path, "base"))
    if type(base) is not np.ndarray or base.ndim != len(node["index"]):
        raise InvariantError("a view's base must be an array of as many axes", path)
    result = base[tuple(slice(*t) for t in node["index"])]
    if node.get("flip"):
        result = np.flip(result, tuple(node["flip"]))
    if list(result.shape) != node["shape"]:
        raise InvariantError("a view does not have its declared shape", path)
    return result


def _unreachable_save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:  # pragma: no cover
    raise AssertionError("handlers/sklearn.encode_state writes view nodes itself")


# -- dispatch ---------------------------------------------------------------------------------


def register(registry: Registry) -> None:
    F = frozenset
    plain = Handler("numpy.ndarray", _save_plain, _load_plain, _ARRAY_KEYS,
                    F({"dtype", "shape"}), check=check_plain_array)
    objects = Handler("numpy.object_array", _save_object, _load_object,
                      F({"shape", "items", "strings"}), F({"shape"}), check=_check_object)
    records = Handler("numpy.record_array", _save_record, _load_record,
                      F({"shape", "dtype", "fields"}), F({"shape", "dtype", "fields"}),
                      check=_check_record)
    for handler in (plain, objects, records):
        registry.add(handler)

    def resolve_array(obj: Any) -> Handler | None:
        if type(obj) is not np.ndarray:
            return None
        if obj.dtype.kind == "O":
            return objects
        if obj.dtype.fields is not None:
            return records
        return plain

    registry.resolvers.append(resolve_array)
    registry.add(Handler("numpy.matrix", _save_matrix, _load_matrix, F({"array"}), F({"array"}),
                         types=(np.matrix,)))
    registry.add(Handler("numpy.memmap", _save_memmap, _load_memmap, F({"array"}), F({"array"}),
                         types=(np.memmap,)))
    registry.add(Handler("numpy.ma.MaskedArray", _save_masked, _load_masked,
                         F({"data", "mask", "fill_value"}), F({"data", "mask", "fill_value"}),
                         types=(np.ma.MaskedArray,)))
    scalar_types = tuple(
        t for t in set(np.sctypeDict.values())
        if issubclass(t, np.generic) and np.dtype(t).kind in "biufcUSMm")
    registry.add(Handler("numpy.scalar", _save_scalar, _load_scalar, F({"dtype", "value"}),
                         F({"dtype", "value"}), check=_check_scalar, types=scalar_types,
                         memo=False))
    dtype_types = tuple({type(np.dtype(t)) for t in set(np.sctypeDict.values())}
                        | {type(np.dtype(object))})
    registry.add(Handler("numpy.dtype", _save_dtype, _load_dtype, F({"dtype"}), F({"dtype"}),
                         check=_check_dtype_node, types=dtype_types, memo=False))
    registry.add(Handler("numpy.random.RandomState", _save_random_state, _load_random_state,
                         F({"state"}), F({"state"}), types=(np.random.RandomState,)))
    seeded = F({"bit_generator", "state", "seed_seq"})
    registry.add(Handler("numpy.random.Generator", _save_generator, _load_generator,
                         seeded, F({"bit_generator", "state"}), types=(np.random.Generator,)))
    for name, cls in _BIT_GENERATORS.items():
        registry.add(Handler(f"numpy.random.{name}", _save_bitgen, _bitgen_loader(name),
                             F({"state", "seed_seq"}), F({"state"}), types=(cls,)))
    seq_keys = F({"entropy", "spawn_key", "pool_size", "n_children_spawned"})
    registry.add(Handler("numpy.random.SeedSequence", _save_seed_sequence, _load_seed_sequence,
                         seq_keys, seq_keys, types=(np.random.SeedSequence,)))
    registry.add(Handler("numpy.view", _unreachable_save, _load_view,
                         F({"base", "index", "shape", "flip"}), F({"base", "index", "shape"}),
                         check=_check_view))
