"""Bulk payloads: long lists, sets and dicts of plain scalars, stored as msgpack in a section.

A fitted ``CountVectorizer`` holds a vocabulary of 10**5 terms or more; written as JSON it would
bury the model in the manifest.  Containers of more than :data:`BULK_MIN_ITEMS` plain scalars
(``str``, ``int`` within 64 bits, ``float``, ``bool``, ``None``; dict keys ``str`` or ``int``) are
packed with msgpack into a ``uint8`` array that lives in a section like any array, and the
manifest keeps one small node::

    {"$type": "msgpack.dict", "count": 120000, "payload": {array node}, "values": {array node}}

msgpack keeps ``int``, ``float``, ``str``, ``bool`` and ``None`` apart exactly.  Dict values that
are all numpy scalars of one dtype (a vocabulary after ``max_features``: ``numpy.int64``) go in
the ``values`` array instead, so they come back as the same numpy scalars.  Anything else (big
ints, lone surrogates, nested containers) takes the ordinary JSON path.

Loading unpacks with strict limits (no ext or bin types, lengths bounded by the payload size and
:attr:`milo_pack.Limits.max_msgpack_items`) and then checks every decoded value.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import ArrayError, LimitError, ManifestError
from ..registry import Handler, Registry

# Containers with more items than this leave the JSON manifest.
BULK_MIN_ITEMS = 1000
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_SCALARS = (str, int, float, bool, type(None))
_KINDS: dict[type, str] = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset",
                           dict: "dict"}


def _plain(value: Any) -> bool:
    t = type(value)
    return t in _SCALARS and (t is not int or _INT_MIN <= value <= _INT_MAX)


def _set_order(items: set[Any] | frozenset[Any]) -> list[Any]:
    # Iteration order depends on hash seeds; sorting gives the same set the same bytes.
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda v: (type(v).__name__, repr(v)))


def _pack(value: list[Any]) -> bytes | None:
    import msgpack  # only for containers of over a thousand scalars: not a small model's cost

    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True, use_single_float=False,
                                      strict_types=True)
        return packed
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
        return None


def _value_array(values: list[Any]) -> np.ndarray | None:
    """The dict values as one array when they are all numpy scalars of one plain dtype."""
    first = values[0]
    if not isinstance(first, np.generic) or first.dtype.kind not in "biuf":
        return None
    t = type(first)
    if not all(type(v) is t for v in values):
        return None
    return np.array(values, dtype=first.dtype)


def _split(obj: Any) -> tuple[list[Any], np.ndarray | None] | None:
    """What a bulk node stores for ``obj``: the msgpack list and a value array, or None."""
    if type(obj) is dict:
        keys = list(obj)
        if not all(type(k) in (str, int) and _plain(k) for k in keys):
            return None
        values = list(obj.values())
        array = _value_array(values)
        if array is not None:
            return [keys], array
        return ([keys, values], None) if all(_plain(v) for v in values) else None
    items = _set_order(obj) if type(obj) in (set, frozenset) else list(obj)
    return ([items], None) if all(_plain(v) for v in items) else None


def _bulk_handler(kind: str) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        parts, values = _split(obj)  # type: ignore[misc]  # the resolver checked it
        payload = cast(bytes, _pack(parts))  # the resolver packed these parts
        fields: dict[str, Any] = {
            "count": len(obj),
            "payload": ctx.array(np.frombuffer(payload, np.uint8), join_path(path, "payload"),
                                 group="msgpack")}
        if values is not None:
            fields["values"] = ctx.array(values, join_path(path, "values"))
        return fields

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        count = node["count"]
        if type(count) is not int or count < 0:
            raise ManifestError("'count' must be a non-negative int", path)
        if count > ctx.limits.max_msgpack_items:
            raise LimitError(f"{count} items exceed max_msgpack_items "
                             f"({ctx.limits.max_msgpack_items})", path)
        payload = node["payload"]
        ctx.check_array(payload, join_path(path, "payload"))
        if payload.get("dtype") != "|u1" or len(payload.get("shape", ())) != 1:
            raise ManifestError("a msgpack payload is a 1-D uint8 array", path)
        if "values" in node:
            if kind != "dict":
                raise ManifestError("only a msgpack.dict has 'values'", path)
            ctx.check_array(node["values"], join_path(path, "values"))
            if node["values"].get("shape") != [count] or node["values"]["dtype"][1] not in "biuf":
                raise ManifestError(f"'values' must be a numeric array of {count}", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        data = ctx.array(node["payload"], join_path(path, "payload")).tobytes()
        parts = _unpack(data, ctx, path)
        count = node["count"]
        if "values" in node:
            values = list(ctx.array(node["values"], join_path(path, "values")))
            parts = [*parts, values]
        _check_parts(parts, kind, count, path)
        return _build(kind, parts, count, path)

    keys = frozenset({"count", "payload", "values"})
    return Handler(f"msgpack.{kind}", save, load, keys, frozenset({"count", "payload"}),
                   check=check)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError("msgpack ext types are not allowed")


def _unpack(data: bytes, ctx: LoadContext, path: str) -> Any:
    # Every length is bounded by the payload itself, so a forged header cannot make msgpack
    # preallocate more than the bytes we hold.
    import msgpack

    items = min(ctx.limits.max_msgpack_items, len(data))
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True, ext_hook=_refuse_ext,
            max_str_len=min(ctx.limits.max_string_length, len(data)), max_bin_len=0,
            max_ext_len=0, max_array_len=items, max_map_len=0)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise ArrayError(f"invalid msgpack payload: {type(exc).__name__}", path) from None


def _check_parts(parts: Any, kind: str, count: int, path: str) -> None:
    width = 2 if kind == "dict" else 1
    if (type(parts) is not list or len(parts) != width
            or not all(type(p) is list and len(p) == count for p in parts)):
        raise ArrayError(f"msgpack payload does not hold {count} items", path)
    if kind == "dict":
        keys, values = parts
        if not all(type(k) in (str, int) for k in keys):
            raise ArrayError("msgpack dict keys must be str or int", path)
        if not all(_plain(v) for v in values) and not all(
                isinstance(v, np.generic) for v in values):
            raise ArrayError("msgpack values must be plain scalars", path)
    elif not all(_plain(v) for v in parts[0]):
        raise ArrayError("msgpack items must be plain scalars", path)


def _build(kind: str, parts: list[Any], count: int, path: str) -> Any:
    if kind == "dict":
        result: Any = dict(zip(parts[0], parts[1], strict=True))
    elif kind == "list":
        return parts[0]
    elif kind == "tuple":
        return tuple(parts[0])
    else:
        result = (set if kind == "set" else frozenset)(parts[0])
    if len(result) != count:
        raise ArrayError("msgpack payload repeats a key or item", path)
    return result


def resolve_bulk(obj: Any) -> Handler | None:
    """The bulk handler for a long container of plain scalars, else None (JSON path)."""
    kind = _KINDS.get(type(obj))
    if kind is None or len(obj) <= BULK_MIN_ITEMS:
        return None
    split = _split(obj)
    if split is None or _pack(split[0]) is None:
        return None
    return _HANDLERS[kind]


_HANDLERS = {kind: _bulk_handler(kind) for kind in _KINDS.values()}


def register(registry: Registry) -> None:
    """The ``msgpack.*`` tags (``resolve_bulk`` is consulted through handlers/__init__.py)."""
    for handler in _HANDLERS.values():
        if handler.tag not in registry.by_tag:
            registry.add(handler)
