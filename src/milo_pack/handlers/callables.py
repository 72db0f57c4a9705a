"""The allow-list of callables and type objects a model may hold.

Parameters such as ``FunctionTransformer(func=np.log1p)``, ``SelectKBest(score_func=f_classif)``
or ``OneHotEncoder(dtype=np.float64)`` hold functions and classes.  They are stored by tag
(``function:numpy.log1p``, ``type:numpy.float64``) and only ever resolved through this static
table of pure functions and plain types; a lambda, a user function or any other importable name
is refused at dump.  There is no generic "import this name" node.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import types
from typing import Any

import numpy as np

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import ManifestError, UnsupportedTypeError
from ..registry import Handler, Registry

# numpy functions (not ufuncs) that are pure reductions or element-wise maps.
_NUMPY_FUNCTIONS = (
    "mean", "median", "average", "sum", "prod", "std", "var", "min", "max", "amin", "amax",
    "nanmean", "nanmedian", "nansum", "nanstd", "nanvar", "nanmin", "nanmax", "ptp", "clip",
    "round", "cumsum", "cumprod", "percentile", "quantile", "nanpercentile", "nanquantile",
    "argmax", "argmin", "asarray", "array", "ravel", "sort", "unique", "diff", "abs",
)
_BUILTIN_TYPES = (int, float, bool, str, complex, bytes, object, list, tuple, dict, set)
_SKLEARN_FUNCTION_MODULES = (
    "sklearn.metrics",
    "sklearn.metrics.pairwise",
    "sklearn.feature_selection",
    "sklearn.preprocessing",
)


def _numpy_entries() -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for name in dir(np):
        obj = getattr(np, name, None)
        if isinstance(obj, np.ufunc):
            entries[f"function:numpy.{name}"] = obj
    for name in _NUMPY_FUNCTIONS:
        obj = getattr(np, name, None)
        if callable(obj):
            entries[f"function:numpy.{name}"] = obj
    for t in set(np.sctypeDict.values()):
        if getattr(np, t.__name__, None) is t:
            entries[f"type:numpy.{t.__name__}"] = t
    for t in _BUILTIN_TYPES:
        entries[f"type:builtins.{t.__name__}"] = t
    entries["function:builtins.len"] = builtins.len
    return entries


def _sklearn_entries() -> dict[str, Any]:
    import importlib

    entries: dict[str, Any] = {}
    for module_name in _SKLEARN_FUNCTION_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if isinstance(obj, types.FunctionType) and not name.startswith("_"):
                entries.setdefault(f"function:{module_name}.{name}", obj)
    return entries


def _constant_handler(tag: str, value: Any) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        return {}

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        return value

    return Handler(tag, save, load, frozenset(), memo=False)


# ``functools.partial`` objects scikit-learn itself builds inside fitted estimators (the numeric
# branch of HistGradientBoosting's categorical preprocessor).  Each is keyed by its function:
# the function is fixed by the tag, only keyword arguments of that function are allowed, and
# there is no generic partial node.
_PARTIALS = {"partial:sklearn.utils.check_array": ("sklearn.utils", "check_array")}


def _partial_handler(tag: str, func: Any) -> Handler:
    allowed = frozenset(inspect.signature(func).parameters) - {"array"}

    def save(obj: functools.partial, ctx: SaveContext, path: str) -> dict:
        if obj.args or not set(obj.keywords) <= allowed:
            raise UnsupportedTypeError(f"partial of {tag[8:]} with unsupported arguments", path)
        return {"keywords": {k: ctx.encode(v, join_path(path, k))
                             for k, v in obj.keywords.items()}}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        keywords = node["keywords"]
        if not isinstance(keywords, dict) or not set(keywords) <= allowed:
            raise ManifestError(f"{tag} takes only keywords of {tag[8:]}", path)

    def load(node: dict, ctx: LoadContext, path: str) -> functools.partial:
        keywords = {k: ctx.decode(v, join_path(path, k)) for k, v in node["keywords"].items()}
        return functools.partial(func, **keywords)

    keys = frozenset({"keywords"})
    return Handler(tag, save, load, keys, keys, check=check, memo=False)


def register(registry: Registry) -> None:
    import importlib

    partials: dict[Any, Handler] = {}
    for tag, (module_name, name) in _PARTIALS.items():
        func = getattr(importlib.import_module(module_name), name)
        partials[func] = _partial_handler(tag, func)
        registry.add(partials[func])

    def resolve_partial(obj: Any) -> Handler | None:
        if type(obj) is functools.partial:
            return partials.get(obj.func)
        return None

    registry.resolvers.append(resolve_partial)
    entries = {**_numpy_entries(), **_sklearn_entries()}
    by_identity: dict[int, Handler] = {}
    for tag, value in sorted(entries.items()):
        if tag in registry.by_tag:
            continue
        handler = _constant_handler(tag, value)
        registry.add(handler)
        by_identity.setdefault(id(value), handler)

    def resolve(obj: Any) -> Handler | None:
        if not (callable(obj) or inspect.isclass(obj)):
            return None
        handler = by_identity.get(id(obj))
        if handler is not None and registry.by_tag[handler.tag].load(
                {}, None, "") is obj:  # type: ignore[arg-type]
            return handler
        return None

    registry.resolvers.append(resolve)
