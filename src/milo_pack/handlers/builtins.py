"""Python built-in values that JSON cannot say directly.

``None``, booleans, strings, finite floats, ints up to 2**53, lists and dicts with plain string
keys are written as JSON itself by the engine; this module handles the rest.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from ..engine import MAX_DECIMAL_DIGITS, CheckContext, LoadContext, SaveContext, float_token
from ..errors import ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_INLINE_BYTES = 4096


def float_value(value: Any, path: str) -> float:
    """A float from its manifest form: a JSON number or one of ``"nan"``, ``"inf"``, ``"-inf"``."""
    if type(value) in (int, float):
        return float(value)
    if isinstance(value, str) and value in _FLOATS:
        return _FLOATS[value]
    raise ManifestError(f"expected a float, got {type(value).__name__}", path)


def _items(node: dict[str, Any], path: str) -> list[Any]:
    items = node.get("items")
    if not isinstance(items, list):
        raise ManifestError("'items' must be a list", path)
    return items


# -- int / float ------------------------------------------------------------------------------


def _check_int(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    value = node["value"]
    text = value[1:] if isinstance(value, str) and value.startswith("-") else value
    ok = isinstance(text, str) and (
        (text.isdigit() and text.isascii() and len(text) <= MAX_DECIMAL_DIGITS)
        or (text.startswith("0x") and len(text) > 2
            and all(c in "0123456789abcdef" for c in text[2:])))
    if not ok:
        raise ManifestError("'int' value must be a decimal or 0x-hex string", path)


def _save_int(obj: int, ctx: SaveContext, path: str) -> dict[str, Any]:  # pragma: no cover - engine
    return {"value": str(obj)}


def _load_int(node: dict[str, Any], ctx: LoadContext, path: str) -> int:
    value: str = node["value"]
    neg = value.startswith("-")
    text = value[1:] if neg else value
    result = int(text, 16) if text.startswith("0x") else int(text)
    return -result if neg else result


def _check_float(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if type(node["value"]) is not str or node["value"] not in _FLOATS:
        raise ManifestError("'float' value must be 'nan', 'inf' or '-inf'", path)


def _load_float(node: dict[str, Any], ctx: LoadContext, path: str) -> float:
    return _FLOATS[node["value"]]


# -- containers -------------------------------------------------------------------------------


def _save_items(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"items": [ctx.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]}


def _check_items(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    _items(node, path)


def _load_tuple(node: dict[str, Any], ctx: LoadContext, path: str) -> tuple[Any, ...]:
    return tuple(ctx.decode(v, f"{path}[{i}]") for i, v in enumerate(node["items"]))


def _load_list(node: dict[str, Any], ctx: LoadContext, path: str) -> list[Any]:
    result: list[Any] = []
    ctx.register(node, result)
    result.extend(ctx.decode(v, f"{path}[{i}]") for i, v in enumerate(node["items"]))
    return result


def _set_order(obj: set[Any] | frozenset[Any]) -> list[Any]:
    # Set iteration order depends on hash seeds; sort so the same set gives the same bytes.
    try:
        return sorted(obj)
    except TypeError:
        return sorted(obj, key=lambda v: (type(v).__name__, repr(v)))


def _save_set(obj: set[Any] | frozenset[Any], ctx: SaveContext, path: str) -> dict[str, Any]:
    return _save_items(_set_order(obj), ctx, path)


def _hashable(value: Any, path: str) -> Any:
    try:
        hash(value)
    except TypeError:
        raise ManifestError(f"unhashable {type(value).__name__} as a set item or dict key",
                            path) from None
    return value


def _load_set(node: dict[str, Any], ctx: LoadContext, path: str) -> set[Any]:
    result: set[Any] = set()
    ctx.register(node, result)
    for i, v in enumerate(node["items"]):
        result.add(_hashable(ctx.decode(v, f"{path}[{i}]"), path))
    return result


def _load_frozenset(node: dict[str, Any], ctx: LoadContext, path: str) -> frozenset[Any]:
    return frozenset(_hashable(ctx.decode(v, f"{path}[{i}]"), path)
                     for i, v in enumerate(node["items"]))


def _save_dict(obj: dict[Any, Any], ctx: SaveContext, path: str) -> dict[str, Any]:
    items = []
    for i, (k, v) in enumerate(obj.items()):
        items.append([ctx.encode(k, f"{path}.<key {i}>"), ctx.encode(v, f"{path}[{k!r}]")])
    return {"items": items}


def _check_dict(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    for pair in _items(node, path):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ManifestError("dict items must be [key, value] pairs", path)


def _load_dict(node: dict[str, Any], ctx: LoadContext, path: str) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    ctx.register(node, result)
    for i, (k, v) in enumerate(node["items"]):
        key = _hashable(ctx.decode(k, f"{path}.<key {i}>"), path)
        result[key] = ctx.decode(v, f"{path}[{key!r}]")
    return result


# -- bytes, complex, slice --------------------------------------------------------------------


def _save_bytes(obj: bytes | bytearray, ctx: SaveContext, path: str) -> dict[str, Any]:
    if len(obj) <= _INLINE_BYTES:
        return {"base64": base64.b64encode(bytes(obj)).decode("ascii")}
    return {"array": ctx.array(np.frombuffer(obj, dtype=np.uint8), path)}


def _check_bytes(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if ("base64" in node) == ("array" in node):
        raise ManifestError("bytes need exactly one of 'base64' or 'array'", path)
    if "base64" in node:
        text = node["base64"]
        if not isinstance(text, str):
            raise ManifestError("'base64' must be a string", path)
        try:
            base64.b64decode(text, validate=True)
        except ValueError:
            raise ManifestError("'base64' is not valid base64", path) from None
    else:
        arr = node["array"]
        ctx.check_array(arr, path)
        if arr.get("dtype") != "|u1" or len(arr.get("shape", ())) != 1:
            raise ManifestError("bytes data must be a 1-D uint8 array", path)


def _load_bytes(node: dict[str, Any], ctx: LoadContext, path: str) -> bytes:
    if "base64" in node:
        return base64.b64decode(node["base64"], validate=True)
    return ctx.array(node["array"], path).tobytes()


def _load_bytearray(node: dict[str, Any], ctx: LoadContext, path: str) -> bytearray:
    return bytearray(_load_bytes(node, ctx, path))


def _save_complex(obj: complex, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"real": float_token(obj.real), "imag": float_token(obj.imag)}


def _check_complex(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    float_value(node["real"], path)
    float_value(node["imag"], path)


def _load_complex(node: dict[str, Any], ctx: LoadContext, path: str) -> complex:
    return complex(float_value(node["real"], path), float_value(node["imag"], path))


def _save_slice(obj: slice, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"start": ctx.encode(obj.start, path), "stop": ctx.encode(obj.stop, path),
            "step": ctx.encode(obj.step, path)}


def _load_slice(node: dict[str, Any], ctx: LoadContext, path: str) -> slice:
    return slice(ctx.decode(node["start"], path), ctx.decode(node["stop"], path),
                 ctx.decode(node["step"], path))


def _save_range(obj: range, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"start": ctx.encode(obj.start, path), "stop": ctx.encode(obj.stop, path),
            "step": ctx.encode(obj.step, path)}


def _check_range(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    for key in ("start", "stop", "step"):
        value = node[key]
        if type(value) is not int and not (isinstance(value, dict) and value.get("$type") == "int"):
            raise ManifestError(f"range {key} must be an int", path)


def _load_range(node: dict[str, Any], ctx: LoadContext, path: str) -> range:
    start, stop, step = (ctx.decode(node[k], path) for k in ("start", "stop", "step"))
    if step == 0:
        raise ManifestError("range step must not be zero", path)
    return range(start, stop, step)


# -- refusals that explain themselves ---------------------------------------------------------


def explain_refusal(obj: object) -> Handler | None:
    """A handler that refuses, saying why, objects pickle would rebuild by running their code.

    Consulted last, when nothing else claimed the object.
    """
    cls = type(obj)
    if cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__:
        return None
    return _REDUCE


def _refuse_reduce(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    cls = type(obj)
    raise UnsupportedTypeError(
        f"cannot save an object of type {quote(f'{cls.__module__}.{cls.__qualname__}')}: it "
        "defines its own __reduce__, so pickle would rebuild it by calling code chosen by the "
        "object, which a milo_pack file never does. Save its data instead (arrays, dicts, "
        "numbers), or register a Handler for the type with milo_pack.register()",
        path or "<root>")


def _never_load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:  # pragma: no cover
    raise AssertionError("refused objects are never written")


_REDUCE = Handler("refused.reduce", _refuse_reduce, _never_load, frozenset(), memo=False)


def _unreachable_save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:  # pragma: no cover
    raise AssertionError("the engine writes this node itself")


def register(registry: Registry) -> None:
    F = frozenset
    registry.add(Handler("int", _unreachable_save, _load_int, F({"value"}), F({"value"}),
                         check=_check_int, memo=False))
    registry.add(Handler("float", _unreachable_save, _load_float, F({"value"}), F({"value"}),
                         check=_check_float, memo=False))
    items = F({"items"})
    registry.add(Handler("tuple", _save_items, _load_tuple, items, items, check=_check_items,
                         types=(tuple,), memo=False))
    # Plain lists and str-keyed dicts are JSON themselves; these tags appear only when one is
    # shared (it needs an "$id") or, for dicts, when keys are not plain strings.
    registry.add(Handler("list", _save_items, _load_list, items, items, check=_check_items,
                         types=(list,)))
    registry.add(Handler("dict", _save_dict, _load_dict, items, items, check=_check_dict,
                         types=(dict,)))
    registry.add(Handler("set", _save_set, _load_set, items, items, check=_check_items,
                         types=(set,)))
    registry.add(Handler("frozenset", _save_set, _load_frozenset, items, items,
                         check=_check_items, types=(frozenset,), memo=False))
    registry.add(Handler("bytes", _save_bytes, _load_bytes, F({"base64", "array"}),
                         check=_check_bytes, types=(bytes,), memo=False))
    registry.add(Handler("bytearray", _save_bytes, _load_bytearray, F({"base64", "array"}),
                         check=_check_bytes, types=(bytearray,)))
    registry.add(Handler("complex", _save_complex, _load_complex, F({"real", "imag"}),
                         F({"real", "imag"}), check=_check_complex, types=(complex,), memo=False))
    keys = F({"start", "stop", "step"})
    registry.add(Handler("slice", _save_slice, _load_slice, keys, keys, types=(slice,),
                         memo=False))
    registry.add(Handler("range", _save_range, _load_range, keys, keys, check=_check_range,
                         types=(range,), memo=False))
