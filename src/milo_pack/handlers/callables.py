"""The allow-list of callables and type objects a model may hold.

Parameters such as ``FunctionTransformer(func=np.log1p)``, ``SelectKBest(score_func=f_classif)``
or ``OneHotEncoder(dtype=np.float64)`` hold functions and classes.  They are stored by tag
(``function:numpy.log1p``, ``type:numpy.float64``) and only ever resolved through this static
table of pure functions and plain types.  There is no generic "import this name" node.

- The table: numpy ufuncs and a few numpy reductions, ``math`` and ``scipy.special`` functions,
  scikit-learn's public metric, kernel, scoring and feature-selection functions, the private
  functions scikit-learn itself stores in fitted models, ``scipy.spatial.distance`` metrics, and
  ``scipy.stats`` distributions.  Frozen distributions (``scipy.stats.uniform(0, 1)``, as in
  ``RandomizedSearchCV(param_distributions=...)``) are stored as the distribution's public name
  plus numeric arguments and rebuilt by calling the allow-listed distribution.
- A lambda, a local function, a function of ``__main__`` or a builtin outside the table is
  refused at dump with :class:`~milo_pack.errors.UnsupportedTypeError` naming it.
- A plain function defined at the top level of an importable module (a user's own
  ``mymodule.f``) is saved as ``function:mymodule.f``, like a user estimator class: a file using it
  is reported by :func:`milo_pack.untrusted_types` and loads only when the caller passes that
  exact tag in ``trusted=``; the module is imported then, and never otherwise.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import math
import sys
import types
from typing import Any

import numpy as np

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry

# numpy functions (not ufuncs) that are pure reductions or element-wise maps.
_NUMPY_FUNCTIONS = (
    "mean", "median", "average", "sum", "prod", "std", "var", "min", "max", "amin", "amax",
    "nanmean", "nanmedian", "nansum", "nanstd", "nanvar", "nanmin", "nanmax", "ptp", "clip",
    "round", "cumsum", "cumprod", "percentile", "quantile", "nanpercentile", "nanquantile",
    "argmax", "argmin", "asarray", "array", "ravel", "sort", "unique", "diff", "abs",
)
_BUILTIN_TYPES = (int, float, bool, str, complex, bytes, object, list, tuple, dict, set)
# Modules whose public functions (``__all__``, else every public function defined there) are
# pure computations a model may hold: metrics, kernels, distances, score functions.
_FUNCTION_MODULES = (
    "sklearn.metrics",
    "sklearn.metrics.pairwise",
    "sklearn.metrics.cluster",
    "sklearn.feature_selection",
    "sklearn.preprocessing",
    "scipy.spatial.distance",
)
# Private functions scikit-learn stores in fitted models (BisectingKMeans._kmeans_single).
_PRIVATE_FUNCTIONS = (
    ("sklearn.cluster._kmeans", "_kmeans_single_lloyd"),
    ("sklearn.cluster._kmeans", "_kmeans_single_elkan"),
)
FUNCTION_PREFIX = "function:"


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


def _module_functions(module_name: str) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if isinstance(v, types.FunctionType) and v.__module__ == module_name]
    return {f"function:{module_name}.{name}": getattr(module, name) for name in sorted(names)
            if not name.startswith("_")
            and isinstance(getattr(module, name, None), types.FunctionType)}


def _math_entries() -> dict[str, Any]:
    return {f"function:math.{name}": obj for name, obj in sorted(vars(math).items())
            if callable(obj) and not name.startswith("_")}


def _special_entries() -> dict[str, Any]:
    import scipy.special

    return {f"function:scipy.special.{name}": getattr(scipy.special, name)
            for name in dir(scipy.special)
            if isinstance(getattr(scipy.special, name), np.ufunc) and not name.startswith("_")}


def _distribution_entries() -> dict[str, Any]:
    import scipy.stats
    from scipy.stats._distn_infrastructure import rv_generic

    return {f"distribution:scipy.stats.{name}": obj
            for name, obj in sorted(vars(scipy.stats).items())
            if isinstance(obj, rv_generic) and not name.startswith("_")}


def _private_entries(module_name: str) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    return {f"function:{module_name}.{name}": getattr(module, name)
            for mod, name in _PRIVATE_FUNCTIONS if mod == module_name}


def _lazy_tables() -> dict[str, Any]:
    """Module -> function building that module's part of the table (imported on first need)."""
    tables: dict[str, Any] = {m: functools.partial(_module_functions, m) for m in _FUNCTION_MODULES}
    for module_name, _ in _PRIVATE_FUNCTIONS:
        tables[module_name] = functools.partial(_private_entries, module_name)
    tables["scipy.special"] = _special_entries
    tables["scipy.stats"] = _distribution_entries
    return tables



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


# -- frozen scipy.stats distributions ---------------------------------------------------------


def _public_distributions() -> dict[str, Any]:
    import scipy.stats
    from scipy.stats._distn_infrastructure import rv_generic

    return {name: obj for name, obj in vars(scipy.stats).items()
            if isinstance(obj, rv_generic) and not name.startswith("_") and obj.name == name}


def _ctor_params(dist: Any) -> str:
    params = dict(dist._updated_ctor_param())
    params.pop("seed", None)
    return repr(sorted(params.items()))


_NUMERIC = (bool, int, float, np.bool_, np.integer, np.floating)


def _frozen_handler(types_: tuple[type, ...]) -> Handler:
    public = _public_distributions()

    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        dist = obj.dist
        name = getattr(dist, "name", None)
        if (name not in public or type(public[name]) is not type(dist)
                or _ctor_params(public[name]) != _ctor_params(dist)):
            raise UnsupportedTypeError(
                f"frozen distribution {quote(name)} is not a public scipy.stats distribution",
                path)
        fields = {"dist": name,
                  "args": [ctx.encode(v, f"{path}.args[{i}]") for i, v in enumerate(obj.args)],
                  "kwds": {k: ctx.encode(v, join_path(path, k)) for k, v in obj.kwds.items()}}
        if dist._random_state is not np.random.mtrand._rand:
            fields["random_state"] = ctx.encode(dist._random_state,
                                                join_path(path, "random_state"))
        return fields

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        name, args, kwds = node["dist"], node["args"], node["kwds"]
        if not isinstance(name, str) or name not in public:
            raise ManifestError(f"{quote(name)} is not a scipy.stats distribution", path)
        shapes = (public[name].shapes or "").replace(" ", "").split(",")
        allowed = {"loc", "scale"} | {n for n in shapes if n}
        if not isinstance(args, list) or not isinstance(kwds, dict) or not set(kwds) <= allowed:
            raise ManifestError(f"arguments of {name} must be numbers (keywords: "
                                f"{sorted(allowed)})", path)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        args = [ctx.decode(v, f"{path}.args[{i}]") for i, v in enumerate(node["args"])]
        kwds = {k: ctx.decode(v, join_path(path, k)) for k, v in node["kwds"].items()}
        if not all(isinstance(v, _NUMERIC) for v in [*args, *kwds.values()]):
            raise InvariantError("distribution arguments must be numbers", path)
        frozen = public[node["dist"]](*args, **kwds)
        if "random_state" in node:
            state = ctx.decode(node["random_state"], join_path(path, "random_state"))
            if not isinstance(state, (np.random.RandomState, np.random.Generator)):
                raise InvariantError("random_state must be a numpy random generator", path)
            frozen.random_state = state
        return frozen

    return Handler("scipy.stats.frozen", save, load,
                   frozenset({"dist", "args", "kwds", "random_state"}),
                   frozenset({"dist", "args", "kwds"}), check=check, types=types_)


# -- functions outside the table --------------------------------------------------------------


def function_name(func: Any) -> str:
    """``module.qualname`` of a function, for messages and tags."""
    return f"{getattr(func, '__module__', None)}.{getattr(func, '__qualname__', '?')}"


def _importable(func: types.FunctionType) -> bool:
    """Whether ``module.qualname`` names this very function in an already-imported module."""
    module = sys.modules.get(func.__module__ or "")
    if module is None or func.__module__ == "__main__" or "<" in func.__qualname__:
        return False
    obj: Any = module
    for part in func.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is func


def _refused_handler(reason: str) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        raise UnsupportedTypeError(
            f"cannot save the function {quote(function_name(obj))}: {reason}", path or "<root>")

    return Handler("function:refused", save, _never_load, frozenset(), memo=False)


def _never_load(node: dict, ctx: LoadContext, path: str) -> Any:  # pragma: no cover
    raise AssertionError("refused functions are never written")


def _user_function_handler(tag: str, func: Any) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        return {}

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        return func

    return Handler(tag, save, load, frozenset(), trusted=False, memo=False)


_LAMBDA = _refused_handler(
    "lambdas, local functions and functions of __main__ cannot be named in a file; define it "
    "at the top level of a module, or use a function from milo_pack's allow-list")
_NOT_PYTHON = _refused_handler(
    "it is neither in milo_pack's allow-list of pure functions nor a plain Python function")


def _resolve_user_function(obj: Any) -> Handler | None:
    """Handler for a function outside the table: untrusted by name, or refused."""
    if isinstance(obj, (types.BuiltinFunctionType, np.ufunc, types.MethodType,
                        functools.partial)):
        return _NOT_PYTHON
    if type(obj) is not types.FunctionType:
        return None
    if not _importable(obj):
        return _LAMBDA
    return _user_function_handler(FUNCTION_PREFIX + function_name(obj), obj)


def trusted_function_factory(target: Any, tag: str) -> Handler | None:
    """Handler for a ``function:`` tag the caller trusted, once its module was imported."""
    if not tag.startswith(FUNCTION_PREFIX):
        return None
    if type(target) is not types.FunctionType or not _importable(target) or (
            FUNCTION_PREFIX + function_name(target) != tag):
        return None
    return _user_function_handler(tag, target)


def register(registry: Registry) -> None:
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
    by_identity: dict[int, Handler] = {}

    def add_entries(entries: dict[str, Any]) -> None:
        for tag, value in sorted(entries.items()):
            if tag in registry.by_tag:
                continue
            handler = _constant_handler(tag, value)
            registry.add(handler)
            by_identity.setdefault(id(value), handler)

    add_entries({**_numpy_entries(), **_math_entries()})
    for module_name, build in _lazy_tables().items():
        registry.add_lazy(module_name, lambda r, build=build: add_entries(build()))

    def resolve(obj: Any) -> Handler | None:
        if not (callable(obj) or inspect.isclass(obj)):
            return None
        handler = by_identity.get(id(obj))
        if handler is not None and registry.by_tag[handler.tag].load(
                {}, None, "") is obj:  # type: ignore[arg-type]
            return handler
        return None

    registry.resolvers.append(resolve)

    def add_frozen(r: Registry) -> None:
        from scipy.stats._distn_infrastructure import rv_continuous_frozen, rv_discrete_frozen

        r.add(_frozen_handler((rv_continuous_frozen, rv_discrete_frozen)))

    registry.add_lazy("scipy.stats", add_frozen)
    # Last: anything callable the table did not claim is saved by name (untrusted) or refused.
    registry.fallback_resolvers.append(_resolve_user_function)
    registry.trusted_factories.append(trusted_function_factory)
