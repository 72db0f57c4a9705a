"""Walking the object graph: encode on dump, validate then decode on load.

Data flows one way.  ``dump`` walks the objects once through the registry: each handler turns
its object into a node (a JSON object with a ``"$type"`` tag) and hands large arrays to
:meth:`SaveContext.array`, which only *plans* sections.  ``load`` first validates the whole
manifest (:func:`validate_graph`: every tag, every key, every array's metadata, trust) and only
then builds objects through the same handlers (:class:`LoadContext`).

Node grammar (see ``docs/FORMAT.md``):

- JSON ``null``, booleans, strings, numbers and arrays stand for themselves (a JSON array is a
  Python ``list``); a JSON object without ``$``-keys is a ``dict`` with ``str`` keys.
- ``{"$type": TAG, ...}`` is a typed node; ``"$id": N`` on it marks an object referenced again
  later as ``{"$ref": N}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .codec import Derived, SectionInfo, SectionPlan, SectionStore, _parsed_dtypes, check_dtype
from .errors import (
    ArrayError,
    InvariantError,
    LimitError,
    ManifestError,
    MiloError,
    UnsupportedTypeError,
    quote,
)
from .limits import Limits
from .registry import Handler, Registry

__all__ = [
    "SaveContext",
    "CheckContext",
    "LoadContext",
    "validate_graph",
    "join_path",
    "float_token",
    "big_int_node",
]

_SAFE_INT = 1 << 53
# Arrays up to this many elements are written inline in the manifest, readable as numbers.
INLINE_MAX = 32
# Arrays below this many bytes share one packed section per dtype instead of one each.
SMALL_ARRAY_BYTES = 256 << 10
# Keys of typed nodes whose dict/list value holds children named by their own keys/indices.
_TRANSPARENT = frozenset({"params", "attrs", "state", "items"})
# Containers longer than this may go to a bulk (msgpack) handler instead of inline JSON.
_BULK_TYPES = (list, tuple, dict, set, frozenset)
_BULK_MIN_LEN = 1000


def join_path(path: str, key: Any) -> str:
    """Append one step to a graph path: ``.name`` for identifiers, ``[key]`` otherwise."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and key.isidentifier() and len(key) <= 80:
        return f"{path}.{key}" if path else key
    return f"{path}[{quote(key, 40)}]"


def float_token(value: float) -> str | float:
    """The manifest form of a float: itself when finite, else ``"nan"``/``"inf"``/``"-inf"``."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


_FLOAT_TOKENS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# Python refuses str(int) beyond 4300 digits; larger ints go in hex, which has no limit.
MAX_DECIMAL_DIGITS = 4000


def big_int_node(value: int) -> dict[str, Any]:
    """Node for an int outside the range JSON readers keep exact (beyond 2**53)."""
    text = str(value) if abs(value) < 10**MAX_DECIMAL_DIGITS else hex(value)
    return {"$type": "int", "value": text}


# --------------------------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------------------------


@dataclass
class _Memo:
    node: Any
    obj: Any  # kept alive so id() and data pointers stay unique during the walk
    ident: int | None = None


class SaveContext:
    """State of one ``dump``: memo of shared objects and the section plans."""

    def __init__(self, registry: Registry, level: int) -> None:
        self.registry = registry
        self.level = level
        self.plans: list[SectionPlan] = []
        self._groups: dict[tuple[str, str, str | None], int] = {}
        self._memo: dict[Any, _Memo] = {}
        self._shared_native: dict[int, int] = {}
        self._next_id = 0
        self.versions: dict[str, str] = {}

    # -- the walk ----------------------------------------------------------------------------
    def encode(self, obj: Any, path: str) -> Any:
        """Encode any supported object into a JSON value (a node)."""
        t = type(obj)
        if obj is None or t is bool or t is str:
            return obj
        if t is int:
            return obj if -_SAFE_INT <= obj <= _SAFE_INT else big_int_node(obj)
        if t is float:
            token = float_token(obj)
            return obj if type(token) is float else {"$type": "float", "value": token}
        handler = None
        if t in _BULK_TYPES and len(obj) > _BULK_MIN_LEN:
            for resolver in self.registry.bulk_resolvers:
                handler = resolver(obj)
                if handler is not None:
                    break
        elif (t is list or (t is np.ndarray and obj.dtype.kind == "O")) and len(obj) > 1:
            for pack_resolver in self.registry.pack_resolvers:
                handler = pack_resolver(obj, self)
                if handler is not None:
                    break
        if handler is None:
            handler = self.registry.for_object(obj)
        if handler is None:
            raise UnsupportedTypeError(
                f"cannot save an object of type {_type_name(t)}: milo_pack has no handler for "
                "it (see the README on trusted and registered types)", path or "<root>")
        key = None
        if handler.memo:
            key = _memo_key(obj)
            entry = self._memo.get(key)
            if entry is not None:
                return self._reference(entry)
        if t is list and handler.tag == "list":
            node: Any = []
            if key is not None:
                self._memo[key] = _Memo(node, obj)
            node.extend(self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj))
            return node
        if t is dict and handler.tag == "dict" and all(
                type(k) is str and not k.startswith("$") for k in obj):
            node = {}
            if key is not None:
                self._memo[key] = _Memo(node, obj)
            for k, v in obj.items():
                node[k] = self.encode(v, join_path(path, k))
            return node
        node = {"$type": handler.tag}
        if key is not None:
            self._memo[key] = _Memo(node, obj)
        try:
            fields = handler.save(obj, self, path)
        except MiloError:
            raise
        except RecursionError:
            raise UnsupportedTypeError(
                "object graph is too deep or has a cycle through an immutable object",
                path or "<root>") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise UnsupportedTypeError(
                f"cannot save {_type_name(t)}: {exc}", path or "<root>") from exc
        node.update(fields)
        return node

    def is_memoized(self, obj: Any) -> bool:
        """Whether ``obj`` was already written (a later mention would be a ``$ref``)."""
        return _memo_key(obj) in self._memo

    def _reference(self, entry: _Memo) -> dict[str, int]:
        if entry.ident is None:
            entry.ident = self._next_id
            self._next_id += 1
            if isinstance(entry.node, dict) and "$type" in entry.node:
                entry.node["$id"] = entry.ident
            else:
                self._shared_native[id(entry.node)] = entry.ident
        return {"$ref": entry.ident}

    def finalize(self, root: Any) -> Any:
        """Give shared plain lists/dicts their tagged form (they need an ``$id``)."""
        if not self._shared_native:
            return root
        shared = self._shared_native

        def visit(node: Any) -> Any:
            if isinstance(node, list):
                items = [visit(v) for v in node]
                if id(node) in shared:
                    return {"$type": "list", "$id": shared[id(node)], "items": items}
                return items
            if isinstance(node, dict):
                if "$type" in node or "$ref" in node:
                    return {k: visit(v) for k, v in node.items()}
                entries = {k: visit(v) for k, v in node.items()}
                if id(node) in shared:
                    return {"$type": "dict", "$id": shared[id(node)],
                            "items": [[k, v] for k, v in entries.items()]}
                return entries
            return node

        return visit(root)

    # -- arrays ------------------------------------------------------------------------------
    def array(self, arr: np.ndarray, path: str, *, group: str | None = None,
              hint: str | None = None, by_member: bool = False) -> dict[str, Any]:
        """Node for a plain-dtype array: inline when tiny, else a slice of a planned section.

        Parameters
        ----------
        arr : numpy.ndarray
            Any plain dtype (bool, ints, floats, complex, fixed-width strings, datetimes).
        group : str, optional
            Pack this array with every other array of the same group and dtype into one shared
            section (tree columns of a forest).  Default: small arrays share a per-dtype section,
            large ones get their own.
        hint : str, optional
            What the values are, to pick filters: ``"children"`` for tree child indices.
        by_member : bool
            The group's section is read a member's rows at a time (a packed ensemble's column
            written as one array): chunked as a section of many arrays is.
        """
        return {"$type": "numpy.ndarray",
                **self.array_fields(arr, path, group=group, hint=hint, by_member=by_member)}

    def array_fields(self, arr: np.ndarray, path: str, *, group: str | None = None,
                     hint: str | None = None, by_member: bool = False) -> dict[str, Any]:
        dtype = arr.dtype
        if dtype.kind not in "biufcUSMm" or dtype.fields is not None or dtype.subdtype:
            raise UnsupportedTypeError(f"array dtype {dtype} is not a plain dtype", path)
        if dtype.byteorder == "=":
            dtype = _file_dtype(dtype)
            arr = arr.view(dtype)
        shape = [int(n) for n in arr.shape]
        fields: dict[str, Any] = {"dtype": dtype.str, "shape": shape}
        # Fortran order is kept: BLAS results depend on it, and predictions must be bit-exact.
        fortran = arr.ndim > 1 and not arr.flags.c_contiguous and arr.flags.f_contiguous
        # Empty arrays never need a section (and sections are never empty).
        if (group is None and arr.size <= INLINE_MAX) or arr.size == 0:
            fields["data"] = _inline_data(arr)
            if fortran:
                fields["order"] = "F"
            return fields
        if fortran:
            flat = arr.T.reshape(-1)
            fields["order"] = "F"
        elif arr.ndim == 1:
            flat = arr  # a strided 1-D view is gathered chunk by chunk, never copied whole
        else:
            flat = np.ascontiguousarray(arr).reshape(-1)
        if group is None:
            group = "small" if arr.nbytes < SMALL_ARRAY_BYTES else f"array:{len(self.plans)}"
        fields["section"], fields["start"] = self._plan(group, dtype, hint, flat, by_member)
        return fields

    def array_concat(self, parts: list[np.ndarray], path: str, *, group: str,
                     hint: str | None = None) -> dict[str, Any]:
        """One array node for the concatenation of ``parts`` along their first axis.

        The parts (views into the model, never copied here) go one after another into the
        ``group`` section, so the node covers them all: how packed ensembles store one column
        for all their trees.
        """
        dtype = _file_dtype(parts[0].dtype)
        tail = list(parts[0].shape[1:])
        if any(p.dtype != dtype or list(p.shape[1:]) != tail for p in parts):
            raise UnsupportedTypeError("parts to concatenate differ in dtype or shape", path)
        shape = [sum(int(p.shape[0]) for p in parts), *tail]
        flats = [(p.reshape(-1) if p.ndim > 1 else p).view(dtype) for p in parts]
        return self._run_node(dtype, shape, flats, group, hint)

    def fill_array(self, value: np.ndarray, shape: list[int]) -> dict[str, Any]:
        """Node for an array whose elements all equal ``value`` (a one-element array)."""
        fields = self.array_fields(np.ascontiguousarray(value).reshape(1), "")
        return {"$type": "numpy.ndarray", "dtype": fields["dtype"], "shape": list(shape),
                "fill": fields["data"][0]}

    def derived_concat(self, dtype: np.dtype, tail: list[int],
                       parts: list[tuple[int, Callable[[], np.ndarray]]], path: str, *,
                       group: str, hint: str | None = None) -> dict[str, Any]:
        """One array node over parts computed only when their section is written (see
        ``Derived``), ``(rows, make)`` each, planned one after another in ``group``.

        ``make()`` must return its rows (``[rows, *tail]``, ``dtype``); it runs at write time,
        so handlers store transformed views of a model (rows picked by a mask: a tree's split
        rows, every tree's of a pack) without holding every transformed copy during the walk.
        """
        dtype = _file_dtype(np.dtype(dtype))
        inner = math.prod(tail)
        shape = [sum(rows for rows, _ in parts), *tail]
        return self._run_node(dtype, shape, [Derived(rows * inner, make)
                                             for rows, make in parts if rows], group, hint)

    def _run_node(self, dtype: np.dtype, shape: list[int],
                  sources: Sequence[np.ndarray | Derived],
                  group: str, hint: str | None) -> dict[str, Any]:
        """Node for ``sources`` (1-D arrays or derived parts, of ``shape`` together) planned
        one after another in ``group``'s section."""
        if math.prod(shape) == 0:
            return {"$type": "numpy.ndarray", "dtype": dtype.str, "shape": shape, "data": []}
        section, start, expected = None, None, None
        for source in sources:
            index, at = self._plan(group, dtype, hint, source)
            if section is None:
                section, start, expected = index, at, at
            if index != section or at != expected:  # pragma: no cover - plans only append
                raise AssertionError("concatenated parts were not planned contiguously")
            expected = at + (source.length if isinstance(source, Derived) else source.shape[0])
        return {"$type": "numpy.ndarray", "dtype": dtype.str, "shape": shape,
                "section": section, "start": start}

    def _plan(self, group: str, dtype: np.dtype, hint: str | None,
              source: np.ndarray | Derived, by_member: bool = False) -> tuple[int, int]:
        key = (group, dtype.str, hint)
        index = self._groups.get(key)
        if index is None:
            index = self._groups[key] = len(self.plans)
            self.plans.append(SectionPlan(dtype=dtype, hint=hint))
        if by_member:
            self.plans[index].by_member = True
        return index, self.plans[index].add(source)


def _file_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype`` with an explicit byte order, as the manifest writes it."""
    if dtype.byteorder == "=":
        explicit: np.dtype = dtype.newbyteorder("<" if np.little_endian else ">")
        return explicit
    return dtype


def _memo_key(obj: Any) -> Any:
    if type(obj) is np.ndarray and obj.dtype.kind != "O":
        # Distinct array objects over the same memory (a KD-tree's data and the estimator's
        # `_fit_X`) are one array: store it once.
        iface = obj.__array_interface__
        return ("ndarray", iface["data"][0], obj.shape, obj.strides, obj.dtype.str)
    return id(obj)


def _type_name(t: type) -> str:
    return quote(f"{t.__module__}.{t.__qualname__}")


def _inline_data(arr: np.ndarray) -> list[Any]:
    flat = arr.reshape(-1)
    kind = arr.dtype.kind
    if kind == "f":
        return [float_token(float(v)) for v in flat.tolist()]
    if kind == "c":
        return [[float_token(v.real), float_token(v.imag)] for v in flat.tolist()]
    if kind == "S":
        return [v.decode("latin-1") for v in flat.tolist()]
    if kind in "Mm":
        return [int(v) for v in flat.view(np.int64).tolist()]
    values: list[Any] = flat.tolist()  # a 1-D array: tolist() gives a list
    return values


# --------------------------------------------------------------------------------------------
# Validate
# --------------------------------------------------------------------------------------------


@dataclass
class CheckContext:
    """What the validation pass knows: budgets, sections, trust, and what it found."""

    registry: Registry
    limits: Limits
    sections: list[SectionInfo]
    trusted: frozenset[str]
    writer: dict[str, Any] = field(default_factory=dict)
    ids: dict[int, dict[str, Any]] = field(default_factory=dict)
    refs: list[tuple[int, str]] = field(default_factory=list)
    untrusted: list[tuple[str, str]] = field(default_factory=list)
    referenced_sections: set[int] = field(default_factory=set)
    # Every sectioned array node's section, start and count, flat (ints only: thousands of
    # small tuples alive through the walk would make the collector run over the whole
    # manifest), and its path: see check_section_layout.
    section_ranges: list[int] = field(default_factory=list)
    section_paths: list[str] = field(default_factory=list)
    # Array nodes already checked (handlers check their columns and the walk visits them too),
    # by id, holding the node so that its id is never reused by a temporary node.
    checked_arrays: dict[int, dict[str, Any]] = field(default_factory=dict)
    objects: int = 0
    total_bytes: int = 0

    def check_array(self, node: dict[str, Any], path: str) -> None:
        """Check a plain array node's metadata against the schema, sections and budgets."""
        check_array_node(node, path, self)


_INLINE_KEYS = frozenset({"$type", "$id", "dtype", "shape", "data", "order"})
_FILL_KEYS = frozenset({"$type", "$id", "dtype", "shape", "fill"})
_SECTION_KEYS = frozenset({"$type", "$id", "dtype", "shape", "section", "start", "order"})


def check_array_node(node: dict[str, Any], path: str, ctx: CheckContext) -> None:
    limits = ctx.limits
    if not isinstance(node, dict):
        raise ManifestError("expected an array node", path)
    checked = ctx.checked_arrays
    if checked.get(id(node)) is node:
        return  # the same node (a handler checked it, then the walk reached it): done
    checked[id(node)] = node
    text = node.get("dtype")
    # A dtype string seen before was parsed and allowed then (a fact about numpy, by its text).
    dtype = _parsed_dtypes.get(text) if type(text) is str else None
    if dtype is None:
        dtype = check_dtype(text, join_path(path, "dtype"))
    shape = node.get("shape")
    if not isinstance(shape, list) or len(shape) > limits.max_ndim:
        raise ArrayError(f"shape must be a list of at most {limits.max_ndim} ints", path)
    count = 1
    max_dim = limits.max_dim
    for n in shape:
        if type(n) is not int or n < 0:
            raise ArrayError("shape entries must be non-negative ints", path)
        if n > max_dim:
            raise LimitError(f"dimension {n} exceeds max_dim ({max_dim})", path)
        count *= n
    nbytes = count * dtype.itemsize
    # Zero dimensions do not make the other dimensions safe: numpy still refuses shapes whose
    # non-zero product overflows, so bound that product as well (it is the count when no
    # dimension is zero).
    if nbytes > limits.max_array_bytes or (
            not count and math.prod(max(n, 1) for n in shape) * dtype.itemsize
            > limits.max_array_bytes):
        raise LimitError(
            f"array of shape {shape[:8]} exceeds max_array_bytes ({limits.max_array_bytes})",
            path)
    # Every array node is decoded into its own buffer: many nodes pointing at one section must
    # not multiply what a small file makes the loader allocate.
    ctx.total_bytes += nbytes
    if ctx.total_bytes > limits.max_total_bytes:
        raise LimitError(f"arrays add up to more than max_total_bytes "
                         f"({limits.max_total_bytes})", path)
    order = node.get("order", "C")
    if order != "C" and order != "F":
        raise ManifestError("order must be 'C' or 'F'", path)
    keys = node.keys()
    if "data" in node:
        if not keys <= _INLINE_KEYS:
            raise ManifestError("an inline array has only dtype, shape, data and order", path)
        _check_inline(node["data"], dtype, count, path)
        return
    if "fill" in node:
        if not keys <= _FILL_KEYS:
            raise ManifestError("a filled array has only dtype, shape and fill", path)
        _check_inline([node["fill"]], dtype, 1, path)
        return
    if not keys <= _SECTION_KEYS:
        raise ManifestError(
            f"unexpected keys {quote(sorted(set(node) - {'$type', '$id'}))} in an array", path)
    index, start = node.get("section"), node.get("start")
    if type(index) is not int or not 0 <= index < len(ctx.sections):
        raise ManifestError(f"array refers to a missing section {quote(index)}", path)
    info = ctx.sections[index]
    if type(start) is not int or start < 0 or start + count > info.length or count == 0:
        raise ArrayError(
            f"array [{quote(start)}, +{count}) lies outside section {index} "
            f"(length {info.length})", path)
    if info.dtype != dtype or info.dtype.str != dtype.str:
        raise ArrayError(f"array dtype {dtype.str} differs from its section's "
                         f"{info.dtype.str}", path)
    ctx.referenced_sections.add(index)
    ctx.section_ranges.extend((index, start, count))
    ctx.section_paths.append(path)


def check_plain_array(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    """The ``check`` of the plain array handler (``numpy.ndarray``): :func:`check_array_node`.

    A node it accepts holds no nested node (its lists are the shape and inline scalars), so
    :func:`validate_graph` does not walk into it.
    """
    check_array_node(node, path, ctx)


def check_section_layout(ctx: CheckContext, *, complete: bool = True) -> None:
    """Every element of every section belongs to exactly one array node, as the writer lays
    them out.

    Overlaps are always refused: many nodes over one range of a small, highly compressible
    section would make every reader (load, ``verify``, ``diff``...) decode the same bytes once
    per node, turning a file of a few kB into gigabytes within the budgets.  ``complete``
    also refuses data that no array covers (relaxed while untrusted types are being listed).
    """
    if not ctx.section_ranges:  # every array inline (a small model): nothing to lay out
        if complete and ctx.sections:
            raise ManifestError("section 0 is not referenced by any array", "manifest.json")
        return
    if len(ctx.section_ranges) <= 3 * _SMALL_LAYOUT:
        _check_small_layout(ctx, complete)
        return
    ranges = np.array(ctx.section_ranges, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((ranges[:, 2], ranges[:, 1], ranges[:, 0]))
    ranges = ranges[order]
    index, start, stop = ranges[:, 0], ranges[:, 1], ranges[:, 1] + ranges[:, 2]
    same = index[1:] == index[:-1]
    overlap = np.flatnonzero(same & (start[1:] < stop[:-1]))
    if overlap.size:
        k = int(order[overlap[0] + 1])
        raise ArrayError(f"array data [{start[overlap[0] + 1]}, +{ranges[overlap[0] + 1, 2]}) "
                         f"of section {index[overlap[0] + 1]} overlaps another array's",
                         ctx.section_paths[k] or "<root>")
    if not complete:
        return
    # Contiguous: each range starts where the previous one of its section stopped, or at 0.
    expected = np.where(np.concatenate(([False], same)), np.concatenate(([0], stop[:-1])), 0)
    gap = np.flatnonzero(start != expected)
    if gap.size:
        k = int(order[gap[0]])
        raise ArrayError(f"section {index[gap[0]]} has data that no array covers before "
                         f"element {start[gap[0]]}", ctx.section_paths[k] or "<root>")
    last = np.flatnonzero(np.concatenate((~same, [True])))
    covered = dict(zip(index[last].tolist(), stop[last].tolist(), strict=True))
    for i, info in enumerate(ctx.sections):
        if covered.get(i, 0) != info.length:
            raise ManifestError(f"section {i} is not entirely covered by arrays "
                                f"(first uncovered element {covered.get(i, 0)})",
                                "manifest.json")


# One-chunk sections up to this many decoded bytes are decoded whole by an eager load.
_SMALL_SECTION = 1 << 20
# Up to this many sectioned array nodes, check_section_layout sorts them in plain Python: a
# small model's handful of ranges costs less than the numpy calls would.
_SMALL_LAYOUT = 64


def _check_small_layout(ctx: CheckContext, complete: bool) -> None:
    """:func:`check_section_layout` for a few ranges: the same rules, the same first error."""
    flat = ctx.section_ranges
    # (section, start, count, node number), in the order np.lexsort gives (a stable sort).
    ranges = sorted((flat[i], flat[i + 1], flat[i + 2], i // 3) for i in range(0, len(flat), 3))
    for (index0, start0, count0, _), (index, start, count, k) in zip(
            ranges, ranges[1:], strict=False):
        if index == index0 and start < start0 + count0:
            raise ArrayError(f"array data [{start}, +{count}) of section {index} overlaps "
                             "another array's", ctx.section_paths[k] or "<root>")
    if not complete:
        return
    covered: dict[int, int] = {}
    for index, start, count, k in ranges:
        if start != covered.get(index, 0):
            raise ArrayError(f"section {index} has data that no array covers before "
                             f"element {start}", ctx.section_paths[k] or "<root>")
        covered[index] = start + count
    for i, info in enumerate(ctx.sections):
        if covered.get(i, 0) != info.length:
            raise ManifestError(f"section {i} is not entirely covered by arrays "
                                f"(first uncovered element {covered.get(i, 0)})",
                                "manifest.json")


def _is_float(value: Any) -> bool:
    """A JSON number a float can hold, or one of the non-finite tokens."""
    t = type(value)
    return (t is float or (t is int and abs(value) <= _MAX_FLOAT_INT)
            or (t is str and value in _FLOAT_TOKENS))


_MAX_FLOAT_INT = int(np.finfo(np.float64).max)


# The integer range of each integer dtype, by dtype (a fact about numpy).
_INT_RANGES: dict[np.dtype, tuple[int, int]] = {}
_INT_TYPES = frozenset({int})
_FLOAT_TYPES = frozenset({float})
_BOOL_TYPES = frozenset({bool})


def _int_range(dtype: np.dtype) -> tuple[int, int]:
    found = _INT_RANGES.get(dtype)
    if found is None:
        info = np.iinfo(np.int64 if dtype.kind in "Mm" else dtype)
        found = _INT_RANGES[dtype] = (int(info.min), int(info.max))
    return found


def _check_inline(data: Any, dtype: np.dtype, count: int, path: str) -> None:
    if not isinstance(data, list) or len(data) != count:
        raise ArrayError(f"inline data must be a list of {count} values", path)
    kind = dtype.kind
    if kind == "b":
        ok = set(map(type, data)) <= _BOOL_TYPES
    elif kind in "iuMm":
        low, high = _int_range(dtype)
        # Types first (a bool is not an int here), then the range from the extremes.
        ok = set(map(type, data)) <= _INT_TYPES and (
            not data or (low <= min(data) and max(data) <= high))
    elif kind == "f":
        # Plain floats (the common case) are checked by their types alone.
        ok = set(map(type, data)) <= _FLOAT_TYPES or all(_is_float(v) for v in data)
    elif kind == "c":
        ok = all(isinstance(v, list) and len(v) == 2 and all(_is_float(x) for x in v)
                 for v in data)
    elif kind == "U":
        ok = all(type(v) is str and len(v) <= dtype.itemsize // 4 for v in data)
    elif kind == "S":
        ok = all(type(v) is str and len(v) <= dtype.itemsize and all(ord(c) < 256 for c in v)
                 for v in data)
    else:  # pragma: no cover - check_dtype keeps the kinds closed
        ok = False
    if not ok:
        raise ArrayError(f"inline data does not match dtype {dtype.str}", path)


def validate_graph(root: Any, ctx: CheckContext) -> None:
    """Validate every node of the graph before anything is built.

    Iterative (a crafted file cannot exhaust the stack), visits every JSON value once: tags
    must resolve through the registry (or be trusted by name), keys must be the handler's,
    ``$id``/``$ref`` must pair up, and each handler's ``check`` runs.  Raises the first problem;
    untrusted tags are collected and reported together with their paths.
    """
    registry, limits = ctx.registry, ctx.limits
    max_objects = limits.max_objects
    by_tag = registry.by_tag
    stack: list[tuple[Any, str]] = [(root, "")]
    pop, push = stack.pop, stack.append
    while stack:
        value, path = pop()
        if isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                item = value[i]
                if isinstance(item, (list, dict)):
                    push((item, f"{path}[{i}]"))
            continue
        if not isinstance(value, dict):
            continue
        if "$ref" in value:
            ref = value["$ref"]
            if len(value) != 1 or type(ref) is not int:
                raise ManifestError("a reference is exactly {\"$ref\": int}", path or "<root>")
            ctx.refs.append((ref, path))
            continue
        tag = value.get("$type")
        if tag is None:
            bad = [k for k in value if k.startswith("$")]
            if bad:
                raise ManifestError(f"unexpected key {quote(bad[0])}", path or "<root>")
            for k in reversed(list(value)):
                item = value[k]
                if isinstance(item, (list, dict)):
                    push((item, join_path(path, k)))
            continue
        where = path or "<root>"
        if type(tag) is not str:
            raise ManifestError("$type must be a string", where)
        ctx.objects += 1
        if ctx.objects > max_objects:
            raise LimitError(f"more than max_objects ({max_objects}) objects", where)
        handler = by_tag.get(tag) or registry.for_tag(tag)
        if handler is None and tag in ctx.trusted:
            # A tag the caller trusted by name: its module is imported only if the tag can
            # build this node (see trust.py), never to find out.
            from .trust import check_trusted_node

            check_trusted_node(tag, value, path)
            handler = registry.for_tag(tag, ctx.trusted)
        if "$id" in value:
            ident = value["$id"]
            if type(ident) is not int or ident < 0:
                raise ManifestError("$id must be a non-negative int", where)
            if ident in ctx.ids:
                raise ManifestError(f"$id {ident} is used twice", where)
            ctx.ids[ident] = value
        if handler is None or (not handler.trusted and tag not in ctx.trusted):
            # Not built, but walked on, so untrusted_types() lists nested tags too and
            # references into this node resolve.
            ctx.untrusted.append((tag, where))
        else:
            _check_keys(value, handler, where)
            check = handler.check
            if check is not None:
                try:
                    check(value, ctx, path)
                except (MiloError, MemoryError, RecursionError):
                    raise
                except Exception as exc:
                    # Fail closed: a check that cannot run on this node (a list where it
                    # expected text, a missing key...) refuses it instead of escaping untyped.
                    raise ManifestError(f"malformed {quote(tag)} node ({_reason(exc)})",
                                        where) from exc
                if check is check_plain_array:
                    continue  # an accepted plain array holds no nested node
        children: list[tuple[Any, str]] = []
        add = children.append
        for k, item in value.items():
            if not isinstance(item, (list, dict)) or (k == "data" and tag == "numpy.ndarray"):
                continue
            if k in _TRANSPARENT:
                if isinstance(item, dict):
                    for kk, v in item.items():
                        if isinstance(v, (list, dict)):
                            add((v, _join_key(path, kk)))
                else:
                    for i, v in enumerate(item):
                        if isinstance(v, (list, dict)):
                            add((v, f"{path}[{i}]"))
            else:
                add((item, join_path(path, k)))
        children.reverse()
        stack.extend(children)
    for ref, path in ctx.refs:
        if ref not in ctx.ids:
            raise ManifestError(f"reference to unknown $id {ref}", path or "<root>")


def _join_key(path: str, key: Any) -> str:
    """:func:`join_path` for a dict key (a str from JSON), its common case first."""
    if type(key) is str and len(key) <= 80 and key.isidentifier():
        return f"{path}.{key}" if path else key
    return join_path(path, key)


# Per handler (code, not files): the keys a node of it may have, ``$type`` and ``$id`` included.
_ALLOWED_KEYS: dict[Handler, frozenset[str]] = {}


def _check_keys(node: dict[str, Any], handler: Handler, where: str) -> None:
    allowed = _ALLOWED_KEYS.get(handler)
    if allowed is None:
        if len(_ALLOWED_KEYS) >= 4096:  # handlers made for trusted tags come and go
            _ALLOWED_KEYS.clear()
        allowed = _ALLOWED_KEYS[handler] = handler.keys | {"$type", "$id"}
    present = node.keys()
    if present <= allowed and handler.required <= present:
        return
    keys = present - {"$type", "$id"}
    extra = keys - handler.keys
    if extra:
        raise ManifestError(
            f"unexpected keys {quote(sorted(extra))} for {quote(handler.tag)}", where)
    missing = handler.required - keys
    if missing:
        raise ManifestError(f"missing keys {sorted(missing)} for {quote(handler.tag)}", where)


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


_IN_PROGRESS = object()


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class LoadContext:
    """State of one load: built objects by ``$id``, the section store, trust and versions."""

    def __init__(self, registry: Registry, store: SectionStore | None, check: CheckContext,
                 *, mmap: bool = False) -> None:
        self.registry = registry
        self._by_tag = registry.by_tag
        self.store = store
        self.trusted = check.trusted
        self.limits = check.limits
        self.writer = check.writer
        self._ids_nodes = check.ids
        self._built: dict[int, Any] = {}
        self.mmap = mmap
        # Chunks decoded ahead after a partial read (see SectionStore.read): loads walk
        # sections in order, so one chunk ahead per section overlaps decoding with building
        # (more only holds more memory: a forest has ~15 sections); one object alone
        # (MiloFile.get) or a streaming lazy load sets 0.
        self.prefetch = 1
        # Small one-chunk sections decoded whole, by index (see _read_small): eager loads
        # only, which take every array of a section once; a lazy load's members are built
        # later, from any thread, under the store's own memory budget.
        self._small_sections: dict[int, list[Any]] | None = (
            {} if type(self) is LoadContext else None)

    def decode(self, value: Any, path: str) -> Any:
        """Build the Python object for a (validated) node."""
        if isinstance(value, list):
            # Scalars stand for themselves: only containers are decoded (and get a path).
            return [self.decode(v, f"{path}[{i}]") if isinstance(v, (list, dict)) else v
                    for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if "$ref" in value:
            return self._resolve(value["$ref"], path)
        tag = value.get("$type")
        if tag is None:
            return {k: self.decode(v, join_path(path, k)) if isinstance(v, (list, dict)) else v
                    for k, v in value.items()}
        ident = value.get("$id")
        if ident is not None:
            built = self._built.get(ident)
            if built is _IN_PROGRESS:
                raise ManifestError("cyclic reference through an immutable object",
                                    path or "<root>")
            if built is not None:
                return built
            self._built[ident] = _IN_PROGRESS
        handler = self._by_tag.get(tag) or self.registry.for_tag(tag, self.trusted)
        assert handler is not None  # validate_graph resolved every tag
        try:
            obj = handler.load(value, self, path)
        except (MiloError, MemoryError, RecursionError):
            raise
        except Exception as exc:
            # Fail closed: whatever a validated node still makes a loader (or the library it
            # calls) refuse is a typed refusal naming the node, never an untyped escape.
            raise InvariantError(f"{quote(tag)} could not be built ({_reason(exc)})",
                                 path or "<root>") from exc
        if ident is not None:
            self._built[ident] = obj
        return obj

    def register(self, node: dict[str, Any], obj: Any) -> None:
        """Record ``obj`` for its node's ``$id`` before its children are built (cycles)."""
        ident = node.get("$id")
        if ident is not None:
            self._built[ident] = obj

    def _resolve(self, ident: int, path: str) -> Any:
        built = self._built.get(ident)
        if built is _IN_PROGRESS:
            raise ManifestError("cyclic reference through an immutable object", path or "<root>")
        if built is None:
            # Handlers may decode fields out of document order; build the target now.
            built = self.decode(self._ids_nodes[ident], path)
        return built

    def array(self, node: dict[str, Any], path: str, out: np.ndarray | None = None) -> np.ndarray:
        """Build a plain array from a validated node, optionally decoding into ``out``."""
        text = node["dtype"]
        dtype = _parsed_dtypes.get(text) or np.dtype(text)  # validated: a plain dtype string
        shape = tuple(node["shape"])
        if "fill" in node:
            value = _inline_array([node["fill"]], dtype, (1,))[0]
            if out is None:
                out = np.empty(shape, dtype)
            out[...] = value
            return out
        if "data" in node:
            arr = _inline_array(node["data"], dtype, shape)
            if node.get("order") == "F":
                arr = np.asfortranarray(arr)
            if out is not None:
                out[...] = arr
                return out
            return arr
        count = math.prod(shape)
        order = node.get("order", "C")
        stored_shape = shape[::-1] if order == "F" else shape
        assert self.store is not None
        index = node["section"]
        if out is None and self.mmap:
            mapped = self.store.mmap(index, node["start"], count)
            if mapped is not None:
                arr = mapped.reshape(stored_shape)
                return arr.T if order == "F" else arr
        small = self._small_sections
        whole = None
        if small is not None:
            whole = small.get(index)
            if whole is None and count < self.store.infos[index].length:
                whole = self._read_small(index, path)
        if out is not None:
            if out.shape != shape or out.dtype != dtype:
                raise ArrayError("array does not match its destination", path)
            flat_out = out.T.reshape(-1) if order == "F" else out.reshape(-1)
            if not np.shares_memory(flat_out, out) and out.size:
                raise ArrayError("destination is not contiguous", path)
            if whole is not None:
                flat_out[...] = self._take_small(index, whole, node["start"], count)
                return out
            self.store.read(index, node["start"], count, out=flat_out, where=path,
                            prefetch=self.prefetch)
            return out
        flat: np.ndarray
        if whole is not None:
            flat = self._take_small(index, whole, node["start"], count).copy()
        else:
            flat = self.store.read(index, node["start"], count, where=path,
                                   prefetch=self.prefetch)
        arr = flat.reshape(stored_shape)
        return arr.T if order == "F" else arr

    def release(self, node: dict[str, Any]) -> None:
        """Say that the array of a validated node was copied by its consumer and is no longer
        viewed: at level 0 its mapped pages leave this process (issue 13).  No-op otherwise."""
        if self.mmap and "section" in node and self.store is not None:
            self.store.release(node["section"], node["start"], math.prod(node["shape"]))

    def _read_small(self, index: int, path: str) -> list[Any] | None:
        """A small one-chunk section decoded whole, once (``[array, elements not yet
        taken]``), or None for any other section.

        Its arrays are then copied out of it: the chunk is decoded and verified once, as the
        store would do, without a cached chunk and its bookkeeping per array.  Dropped as soon
        as every element was taken (validation made the arrays tile the section exactly).
        """
        assert self.store is not None and self._small_sections is not None
        info = self.store.infos[index]
        if (info.chunk_length < info.length
                or info.length * info.dtype.itemsize > _SMALL_SECTION):
            return None
        whole = [self.store.read(index, 0, info.length, where=path, prefetch=0), info.length]
        self._small_sections[index] = whole
        return whole

    def _take_small(self, index: int, whole: list[Any], start: int, count: int) -> np.ndarray:
        arr: np.ndarray = whole[0]
        if start + count > arr.shape[0]:  # pragma: no cover - validated against the section
            raise ArrayError("array lies outside its section", f"section {index}")
        whole[1] -= count
        if whole[1] <= 0:
            del cast(dict[int, Any], self._small_sections)[index]
        return arr[start:start + count]

    def array_rows(self, node: dict[str, Any], start: int, stop: int, path: str,
                   out: np.ndarray | None = None, view: bool = False) -> np.ndarray:
        """Rows ``[start, stop)`` (first axis) of a validated array node, decoding only the
        chunks that hold them (a packed ensemble builds its members a block of rows at a time).

        ``out`` (optional): the destination, of the rows' shape and the node's dtype; a 1-D
        destination may be strided (a field of a record array).
        ``view`` (without ``out``): the rows may come back as a read-only view of a decoded
        chunk or of the mapping, for a caller that only reads them before its next read.
        """
        shape = tuple(node["shape"])
        if not 0 <= start <= stop <= shape[0]:
            raise ArrayError(f"rows [{start}, {stop}) are outside {shape[0]} rows", path)
        rows = (stop - start,) + shape[1:]
        if out is not None and (out.shape != rows or out.dtype.str != node["dtype"]):
            raise ArrayError("rows do not match their destination", path)
        if "fill" in node:
            # Never the whole array: a fill of every leaf of a forest is millions of rows.
            value = _inline_array([node["fill"]], np.dtype(node["dtype"]), (1,))[0]
            if out is None:
                out = np.empty(rows, node["dtype"])
            out[...] = value
            return out
        if "section" not in node or node.get("order", "C") != "C" or self.store is None:
            part = self.array(node, path)[start:stop]  # inline (small) or column-major
            if out is None:
                return part
            out[...] = part
            return out
        inner = math.prod(shape[1:])
        offset, count = node["start"] + start * inner, (stop - start) * inner
        flat = self.store.mmap(node["section"], offset, count) if self.mmap else None
        if flat is not None:
            if out is None:
                return flat.reshape(rows)
            out[...] = flat.reshape(rows)
            return out
        if out is not None and out.ndim > 1:
            out[...] = self.store.read(node["section"], offset, count, where=path,
                                       prefetch=self.prefetch).reshape(rows)
            return out
        flat = self.store.read(node["section"], offset, count, out=out, where=path,
                               prefetch=self.prefetch, view=view and out is None)
        return flat.reshape(rows)

    def release_rows(self, node: dict[str, Any], start: int, stop: int) -> None:
        """:meth:`release` for rows ``[start, stop)`` of a validated array node (a block of a
        packed ensemble, copied into its members)."""
        if self.mmap and "section" in node and self.store is not None and stop > start:
            inner = math.prod(node["shape"][1:])
            self.store.release(node["section"], node["start"] + start * inner,
                               (stop - start) * inner)


def _inline_array(data: list[Any], dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    kind = dtype.kind
    if kind == "f":
        values: list[Any] = data if set(map(type, data)) <= _FLOAT_TYPES else [
            _FLOAT_TOKENS.get(v, v) if isinstance(v, str) else v for v in data]
    elif kind == "c":
        # Strings here are float tokens: validation (_check_inline) refused any other.
        values = [complex(cast(float, _FLOAT_TOKENS.get(re, re)) if isinstance(re, str) else re,
                          cast(float, _FLOAT_TOKENS.get(im, im)) if isinstance(im, str) else im)
                  for re, im in data]
    elif kind == "S":
        values = [v.encode("latin-1") for v in data]
    elif kind in "Mm":
        return np.array(data, dtype=np.int64).view(dtype).reshape(shape)
    else:
        values = data
    return np.array(values, dtype=dtype).reshape(shape)
