"""Stand-in handlers for ``collections.OrderedDict`` and ``defaultdict``, for the booster tests.

The generic handlers for these plain-Python containers belong to ``handlers/builtins.py`` and
are written on another branch.  The booster handlers already pass such values (XGBoost's and
LightGBM's ``evals_result``, LightGBM's ``best_score``) through ``ctx.encode`` unchanged; until
the real handlers are merged, :func:`install` registers these minimal ones so that the booster
round trips can run.  It does nothing once the registry has its own: delete this file then.
"""

from __future__ import annotations

import collections

from milo_pack.errors import ManifestError
from milo_pack.registry import Handler, get_registry

_DEFAULT_FACTORIES = {"dict": dict, "list": list, "OrderedDict": collections.OrderedDict,
                      "None": None}


def _items(obj, ctx, path):
    return [[ctx.encode(k, path), ctx.encode(v, f"{path}[{k!r}]")] for k, v in obj.items()]


def _save_ordered(obj, ctx, path):
    return {"items": _items(obj, ctx, path)}


def _load_ordered(node, ctx, path):
    return collections.OrderedDict(
        (ctx.decode(k, path), ctx.decode(v, path)) for k, v in node["items"])


def _save_default(obj, ctx, path):
    factory = obj.default_factory
    names = {v: k for k, v in _DEFAULT_FACTORIES.items()}
    if factory not in names:
        raise ValueError("unsupported default_factory")
    return {"factory": names[factory], "items": _items(obj, ctx, path)}


def _check_default(node, ctx, path):
    if node["factory"] not in _DEFAULT_FACTORIES:
        raise ManifestError("unknown default_factory", path)


def _load_default(node, ctx, path):
    result = collections.defaultdict(_DEFAULT_FACTORIES[node["factory"]])
    for k, v in node["items"]:
        result[ctx.decode(k, path)] = ctx.decode(v, path)
    return result


def installed() -> bool:
    """Whether the registry has real (or stand-in) handlers for both containers."""
    registry = get_registry()
    return all(registry.for_object(v) is not None for v in (
        collections.OrderedDict(), collections.defaultdict(list)))


def install() -> None:
    registry = get_registry()
    if registry.for_object(collections.OrderedDict()) is None:
        registry.add(Handler("test.OrderedDict", _save_ordered, _load_ordered,
                             frozenset({"items"}), frozenset({"items"}),
                             types=(collections.OrderedDict,)))
    if registry.for_object(collections.defaultdict(list)) is None:
        registry.add(Handler("test.defaultdict", _save_default, _load_default,
                             frozenset({"items", "factory"}), frozenset({"items", "factory"}),
                             check=_check_default, types=(collections.defaultdict,)))
