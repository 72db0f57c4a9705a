"""The allow-list of callables and type objects a model may hold.

Parameters such as ``FunctionTransformer(func=np.log1p)``, ``SelectKBest(score_func=f_classif)``
or ``OneHotEncoder(dtype=np.float64)`` hold functions and classes.  They are stored by tag
(``function:numpy.log1p``, ``type:numpy.float64``) and only ever resolved through rules and
static tables of pure functions and plain types.  There is no generic "import this name" node.

- Rules (no table): numpy ufuncs and a few numpy reductions, numpy scalar types, a few built-in
  types, ``math`` functions, the non-mutating functions of ``operator``.
- Tables, each built the first time a tag or an object of its module is needed: scikit-learn's
  public metric, kernel, scoring and feature-selection functions, the private functions
  scikit-learn itself stores in fitted models, ``scipy.spatial.distance`` metrics,
  ``scipy.special`` functions and ``scipy.stats`` distributions.  An object is matched by
  identity; which tables may hold it follows from the object alone (its module, or being a
  ufunc), so the answer never depends on which tables an earlier call happened to build.
- Frozen distributions (``scipy.stats.uniform(0, 1)``, as in
  ``RandomizedSearchCV(param_distributions=...)``) are stored as the distribution's public name
  plus numeric arguments and rebuilt by calling the allow-listed distribution.
- ``functools.partial`` of an allow-listed function (``partial(np.add, 10)``), with its
  arguments as data; ``operator.attrgetter``/``itemgetter`` with public names and data keys.
  ``operator.methodcaller`` calls a method *named by the file* on whatever it is given, so its
  tag is not trusted by default: a file holding one loads only with
  ``trusted=["operator.methodcaller"]``.
- A lambda, a local function, a function of ``__main__``, a bound method or a builtin outside the
  allow-list is refused at dump with :class:`~milo_pack.errors.UnsupportedTypeError` saying why.
- A plain function defined at the top level of an importable module (a user's own
  ``mymodule.f``) is saved as ``function:mymodule.f``, like a user estimator class: a file using it
  is reported by :func:`milo_pack.untrusted_types` and loads only when the caller passes that
  exact tag in ``trusted=``; the module is imported then, and never otherwise.
"""

from __future__ import annotations

import builtins
import collections
import functools
import importlib
import math
import operator
import sys
import types
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry

FUNCTION_PREFIX = "function:"

# numpy functions (not ufuncs) that are pure reductions or element-wise maps.
_NUMPY_FUNCTIONS = (
    "mean", "median", "average", "sum", "prod", "std", "var", "min", "max", "amin", "amax",
    "nanmean", "nanmedian", "nansum", "nanstd", "nanvar", "nanmin", "nanmax", "ptp", "clip",
    "round", "cumsum", "cumprod", "percentile", "quantile", "nanpercentile", "nanquantile",
    "argmax", "argmin", "asarray", "array", "ravel", "sort", "unique", "diff", "abs",
)
_BUILTIN_TYPES: dict[str, type] = {t.__name__: t for t in (
    int, float, bool, str, complex, bytes, bytearray, object, list, tuple, dict, set, frozenset,
    range, slice, map, filter, zip, enumerate, reversed)}
# Container types as values: a defaultdict's default_factory (LightGBM's best_score_ is a
# defaultdict(OrderedDict)).  Calling one builds an empty container, nothing else.
_COLLECTION_TYPES: dict[str, type] = {t.__name__: t for t in (
    collections.OrderedDict, collections.defaultdict, collections.Counter, collections.deque)}
# operator's functions that compute a value from their arguments and change nothing (no
# setitem/delitem, no in-place i* forms, no `call`).
_OPERATOR_FUNCTIONS = frozenset({
    "abs", "add", "and_", "concat", "contains", "countOf", "eq", "floordiv", "ge", "getitem",
    "gt", "index", "indexOf", "inv", "invert", "is_", "is_not", "le", "length_hint", "lshift",
    "lt", "matmul", "mod", "mul", "ne", "neg", "not_", "or_", "pos", "pow", "rshift", "sub",
    "truediv", "truth", "xor",
})
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
# scipy.special functions that change global state rather than compute a value.
_SPECIAL_EXCLUDED = frozenset({"seterr", "geterr", "errstate", "test"})


# -- rules: numpy, builtins, math, operator ---------------------------------------------------


# Abstract scalar types (``make_column_selector(dtype_include=np.number)``).
_NUMPY_ABSTRACT_TYPES = ("generic", "number", "integer", "signedinteger", "unsignedinteger",
                         "inexact", "floating", "complexfloating", "flexible", "character")


@functools.cache
def _numpy_scalar_types() -> frozenset[type]:
    concrete = [t for t in set(np.sctypeDict.values()) if getattr(np, t.__name__, None) is t]
    abstract = [getattr(np, name) for name in _NUMPY_ABSTRACT_TYPES if hasattr(np, name)]
    return frozenset(concrete + [t for t in abstract if getattr(np, t.__name__, None) is t])


@functools.cache
def _numpy_ufunc_names() -> dict[int, str]:
    """id -> attribute name of every ufunc numpy exports (for ufuncs known by an alias)."""
    found: dict[int, str] = {}
    for name in sorted(dir(np)):
        obj = getattr(np, name, None)
        if isinstance(obj, np.ufunc) and not name.startswith("_"):
            found.setdefault(id(obj), name)
    return found


def _rule_value(tag: str) -> Any:
    """The object an allow-listed rule tag names, else None."""
    kind, _, path = tag.partition(":")
    module, _, name = path.rpartition(".")
    if not name or name.startswith("_"):
        return None
    if kind == "function" and module == "numpy":
        obj = getattr(np, name, None)
        if isinstance(obj, np.ufunc) or (name in _NUMPY_FUNCTIONS and callable(obj)):
            return obj
    elif kind == "type" and module == "numpy":
        obj = getattr(np, name, None)
        if obj in _numpy_scalar_types():
            return obj
    elif kind == "type" and module == "builtins":
        return _BUILTIN_TYPES.get(name)
    elif kind == "type" and module == "collections":
        return _COLLECTION_TYPES.get(name)
    elif tag == "function:builtins.len":
        return builtins.len
    elif kind == "function" and module == "math":
        obj = getattr(math, name, None)
        if callable(obj):
            return obj
    elif kind == "function" and module == "operator" and name in _OPERATOR_FUNCTIONS:
        return getattr(operator, name, None)
    return None


def _rule_tag(obj: Any) -> str | None:
    """The rule tag of an allow-listed numpy/builtin/math/operator object, else None."""
    t = type(obj)
    if t is np.ufunc:
        name = obj.__name__
        if getattr(np, name, None) is not obj:
            name = _numpy_ufunc_names().get(id(obj))
        return f"function:numpy.{name}" if name is not None else None
    if isinstance(obj, type):
        if _BUILTIN_TYPES.get(obj.__name__) is obj:
            return f"type:builtins.{obj.__name__}"
        if _COLLECTION_TYPES.get(obj.__name__) is obj:
            return f"type:collections.{obj.__name__}"
        if obj in _numpy_scalar_types():
            return f"type:numpy.{obj.__name__}"
        if obj.__module__.startswith("sklearn."):
            # An allow-listed scikit-learn class as a value (RepeatedKFold holds `cv=KFold`).
            from . import sklearn

            tag = sklearn.tag_for_class(obj)
            return f"type:{tag}" if tag is not None else None
        return None
    module = getattr(obj, "__module__", None)
    if module == "numpy":
        for name in _NUMPY_FUNCTIONS:
            if getattr(np, name, None) is obj:
                return f"function:numpy.{name}"
    elif t is types.BuiltinFunctionType:
        name = obj.__name__
        if obj is builtins.len:
            return "function:builtins.len"
        if module == "math" and getattr(math, name, None) is obj:
            return f"function:math.{name}"
        if module in ("_operator", "operator") and name in _OPERATOR_FUNCTIONS and getattr(
                operator, name, None) is obj:
            return f"function:operator.{name}"
    return None


def _rule_tags() -> list[str]:
    """Every tag the rules allow (for ``Registry.load_all``)."""
    tags = [f"function:numpy.{name}" for name in sorted(dir(np))
            if isinstance(getattr(np, name, None), np.ufunc)]
    tags += [f"function:numpy.{name}" for name in _NUMPY_FUNCTIONS]
    tags += [f"type:numpy.{t.__name__}" for t in _numpy_scalar_types()]
    tags += [f"type:builtins.{name}" for name in _BUILTIN_TYPES]
    tags += [f"type:collections.{name}" for name in _COLLECTION_TYPES]
    tags += ["function:builtins.len"]
    tags += [f"function:math.{n}" for n in dir(math) if not n.startswith("_")
             and callable(getattr(math, n))]
    tags += [f"function:operator.{n}" for n in sorted(_OPERATOR_FUNCTIONS)
             if hasattr(operator, n)]
    return [t for t in tags if _rule_value(t) is not None]


# -- tables -----------------------------------------------------------------------------------


def _module_functions(module_name: str) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if isinstance(v, types.FunctionType) and v.__module__ == module_name]
    return {f"function:{module_name}.{name}": getattr(module, name) for name in sorted(names)
            if not name.startswith("_")
            and isinstance(getattr(module, name, None), types.FunctionType)}


def _special_entries() -> dict[str, Any]:
    import scipy.special

    entries = {}
    for name in dir(scipy.special):
        obj = getattr(scipy.special, name)
        if name.startswith("_") or name in _SPECIAL_EXCLUDED:
            continue
        if isinstance(obj, np.ufunc) or (
                type(obj) is types.FunctionType and obj.__module__.startswith("scipy.special")):
            entries[f"function:scipy.special.{name}"] = obj
    return entries


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


def _lazy_tables() -> dict[str, Callable[[], dict[str, Any]]]:
    """Module -> function building that module's part of the table (imported on first need).

    Every object of a table is defined in that module or below it, so looking an object up by
    its ``__module__`` finds its table (``tests/test_registry.py`` checks every entry).  ufuncs
    have no ``__module__``: :func:`resolve` looks them up in numpy, then in scipy.special.
    ``handlers.FUNCTION_TABLES`` lists these modules for the registry's lazy loaders.
    """
    tables: dict[str, Any] = {m: functools.partial(_module_functions, m) for m in _FUNCTION_MODULES}
    for module_name, _ in _PRIVATE_FUNCTIONS:
        tables[module_name] = functools.partial(_private_entries, module_name)
    tables["scipy.special"] = _special_entries
    tables["scipy.stats"] = _distribution_entries
    return tables


def _constant_handler(tag: str, value: Any) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        return {}

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        return value

    return Handler(tag, save, load, frozenset(), memo=False)


def constant_value(handler: Handler) -> Any:
    """The object an allow-listed function or type handler stands for."""
    return handler.load({}, None, "")  # type: ignore[arg-type]


# -- functools.partial ------------------------------------------------------------------------

# ``functools.partial`` objects scikit-learn itself builds inside fitted estimators (the numeric
# branch of HistGradientBoosting's categorical preprocessor), of a function outside the
# allow-list: each is keyed by its function, only keyword arguments of that function are allowed.
_SKLEARN_PARTIALS = {"partial:sklearn.utils.check_array": ("sklearn.utils", "check_array")}


@functools.cache
def _sklearn_partial(tag: str) -> Handler | None:
    import inspect

    found = _SKLEARN_PARTIALS.get(tag)
    if found is None:
        return None
    module_name, name = found
    func = getattr(importlib.import_module(module_name), name)
    allowed = frozenset(inspect.signature(func).parameters) - {"array"}

    def save(obj: functools.partial[Any], ctx: SaveContext, path: str) -> dict[str, Any]:
        if obj.args or not set(obj.keywords) <= allowed:
            raise UnsupportedTypeError(f"partial of {tag[8:]} with unsupported arguments", path)
        return {"keywords": {k: ctx.encode(v, join_path(path, k))
                             for k, v in obj.keywords.items()}}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        keywords = node["keywords"]
        if not isinstance(keywords, dict) or not set(keywords) <= allowed:
            raise ManifestError(f"{tag} takes only keywords of {tag[8:]}", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> functools.partial[Any]:
        keywords = {k: ctx.decode(v, join_path(path, k)) for k, v in node["keywords"].items()}
        return functools.partial(func, **keywords)

    keys = frozenset({"keywords"})
    return Handler(tag, save, load, keys, keys, check=check, cls=func, memo=False)


def _is_function_node(node: Any) -> bool:
    return (isinstance(node, dict) and set(node) == {"$type"} and isinstance(node["$type"], str)
            and node["$type"].startswith(FUNCTION_PREFIX))


def _save_partial(obj: functools.partial[Any], ctx: SaveContext, path: str) -> dict[str, Any]:
    if obj.__dict__:
        raise UnsupportedTypeError("a functools.partial with attributes of its own", path)
    func = ctx.encode(obj.func, join_path(path, "func"))
    if not _is_function_node(func):
        what = func.get("$type") if isinstance(func, dict) else func
        raise UnsupportedTypeError(
            "functools.partial is saved only around an allow-listed function (or your own "
            f"top-level function), not {quote(what)}", path)
    return {"func": func,
            "args": [ctx.encode(v, f"{path}.args[{i}]") for i, v in enumerate(obj.args)],
            "keywords": ctx.encode(dict(obj.keywords), join_path(path, "keywords"))}


def _check_partial(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if not _is_function_node(node["func"]):
        raise ManifestError("a partial's func must be a function node", path)
    if not isinstance(node["args"], list):
        raise ManifestError("a partial's args must be a list", path)


def _load_partial(node: dict[str, Any], ctx: LoadContext, path: str) -> functools.partial[Any]:
    func = ctx.decode(node["func"], join_path(path, "func"))
    args = [ctx.decode(v, f"{path}.args[{i}]") for i, v in enumerate(node["args"])]
    keywords = ctx.decode(node["keywords"], join_path(path, "keywords"))
    if not callable(func) or type(keywords) is not dict or not all(
            type(k) is str for k in keywords):
        raise InvariantError("a partial needs a function and keyword arguments by name", path)
    return functools.partial(func, *args, **keywords)


_PARTIAL = Handler("functools.partial", _save_partial, _load_partial,
                   frozenset({"func", "args", "keywords"}),
                   frozenset({"func", "args", "keywords"}), check=_check_partial, memo=False)


# -- operator getters -------------------------------------------------------------------------


def _public_name(name: Any, dotted: bool) -> bool:
    parts = name.split(".") if isinstance(name, str) and dotted else [name]
    return all(isinstance(p, str) and p.isidentifier() and not p.startswith("_") for p in parts)


def _save_attrgetter(obj: operator.attrgetter[Any], ctx: SaveContext, path: str) -> dict[str, Any]:
    names = list(obj.__reduce__()[1])
    if not all(_public_name(n, True) for n in names):
        raise UnsupportedTypeError("attrgetter of a private or dunder attribute", path)
    return {"attrs": names}


def _check_attrgetter(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    names = node["attrs"]
    if not isinstance(names, list) or not names or not all(_public_name(n, True) for n in names):
        raise ManifestError("attrgetter takes public attribute names (no '_' prefix)", path)


def _load_attrgetter(node: dict[str, Any], ctx: LoadContext, path: str) -> operator.attrgetter[Any]:
    return operator.attrgetter(*node["attrs"])


def _save_itemgetter(obj: operator.itemgetter[Any], ctx: SaveContext, path: str) -> dict[str, Any]:
    keys = obj.__reduce__()[1]
    return {"items": [ctx.encode(v, f"{path}.items[{i}]") for i, v in enumerate(keys)]}


def _check_itemgetter(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if not isinstance(node["items"], list) or not node["items"]:
        raise ManifestError("itemgetter takes at least one key", path)


def _load_itemgetter(node: dict[str, Any], ctx: LoadContext, path: str) -> operator.itemgetter[Any]:
    keys = [ctx.decode(v, f"{path}.items[{i}]") for i, v in enumerate(node["items"])]
    return operator.itemgetter(*keys)


def _save_methodcaller(obj: operator.methodcaller, ctx: SaveContext, path: str) -> dict[str, Any]:
    # typeshed's object.__reduce__ may return a str (a global's name); methodcaller's is a tuple.
    factory, args = cast("tuple[Any, ...]", obj.__reduce__())
    if type(factory) is functools.partial:  # methodcaller with keyword arguments
        name, keywords = factory.args[0], dict(factory.keywords)
    else:
        name, args, keywords = args[0], args[1:], {}
    if not _public_name(name, False):
        raise UnsupportedTypeError("methodcaller of a private or dunder method", path)
    return {"name": name,
            "args": [ctx.encode(v, f"{path}.args[{i}]") for i, v in enumerate(args)],
            "keywords": ctx.encode(keywords, join_path(path, "keywords"))}


def _check_methodcaller(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if not _public_name(node["name"], False) or not isinstance(node["args"], list):
        raise ManifestError("methodcaller takes a public method name and arguments", path)


def _load_methodcaller(node: dict[str, Any], ctx: LoadContext, path: str) -> operator.methodcaller:
    args = [ctx.decode(v, f"{path}.args[{i}]") for i, v in enumerate(node["args"])]
    keywords = ctx.decode(node["keywords"], join_path(path, "keywords"))
    if type(keywords) is not dict or not all(type(k) is str for k in keywords):
        raise InvariantError("methodcaller keywords must be a dict of names", path)
    return operator.methodcaller(node["name"], *args, **keywords)


def _operator_handlers() -> list[Handler]:
    F = frozenset
    return [
        Handler("operator.attrgetter", _save_attrgetter, _load_attrgetter, F({"attrs"}),
                F({"attrs"}), check=_check_attrgetter, types=(operator.attrgetter,), memo=False),
        Handler("operator.itemgetter", _save_itemgetter, _load_itemgetter, F({"items"}),
                F({"items"}), check=_check_itemgetter, types=(operator.itemgetter,), memo=False),
        # Calls a method named by the file on what it is applied to: loads only when trusted.
        Handler("operator.methodcaller", _save_methodcaller, _load_methodcaller,
                F({"name", "args", "keywords"}), F({"name", "args", "keywords"}),
                check=_check_methodcaller, types=(operator.methodcaller,), trusted=False,
                memo=False),
    ]


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

    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
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

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        name, args, kwds = node["dist"], node["args"], node["kwds"]
        if not isinstance(name, str) or name not in public:
            raise ManifestError(f"{quote(name)} is not a scipy.stats distribution", path)
        shapes = (public[name].shapes or "").replace(" ", "").split(",")
        allowed = {"loc", "scale"} | {n for n in shapes if n}
        if not isinstance(args, list) or not isinstance(kwds, dict) or not set(kwds) <= allowed:
            raise ManifestError(f"arguments of {name} must be numbers (keywords: "
                                f"{sorted(allowed)})", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
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


# -- functions outside the allow-list ---------------------------------------------------------


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


def _refused_handler(what: str, reason: str) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        raise UnsupportedTypeError(
            f"cannot save the {what} {quote(function_name(obj))}: {reason}", path or "<root>")

    return Handler("function:refused", save, _never_load, frozenset(), memo=False)


def _never_load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:  # pragma: no cover
    raise AssertionError("refused functions are never written")


def _user_function_handler(tag: str, func: Any) -> Handler:
    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        return {}

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        return func

    return Handler(tag, save, load, frozenset(), trusted=False, memo=False)


_LAMBDA = _refused_handler(
    "function",
    "lambdas, local functions and functions of __main__ cannot be named in a file; define it "
    "at the top level of a module, or use a function from milo_pack's allow-list")
_METHOD = _refused_handler(
    "bound method",
    "a method carries the object it is bound to and runs that object's code; save the object "
    "itself, or hold an allow-listed function (functools.partial of one to fix arguments)")
_NOT_PYTHON = _refused_handler(
    "function", "it is neither in milo_pack's allow-list of pure functions nor a plain Python "
    "function defined at the top level of a module")


def _resolve_user_function(obj: Any) -> Handler | None:
    """Handler for a function outside the allow-list: untrusted by name, or refused."""
    if isinstance(obj, types.MethodType) or (
            isinstance(obj, types.BuiltinMethodType)
            and not isinstance(getattr(obj, "__self__", None), (types.ModuleType, type(None)))):
        return _METHOD
    if isinstance(obj, (types.BuiltinFunctionType, np.ufunc, functools.partial)):
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


# -- registration: one piece per need, so that a registry imports this module only when a
# function, a type value or one of these tags is first met (see handlers/__init__.py) ----------


def _by_identity(registry: Registry) -> dict[int, Handler]:
    """id -> handler of every table entry built so far in ``registry``."""
    # Only this function stores the entry, always as such a dict.
    table: dict[int, Handler] = registry.state.setdefault("callables.by_identity", {})
    return table


def add_table(registry: Registry, module_name: str) -> None:
    """Register the allow-listed functions (or distributions) of one table module."""
    build = _lazy_tables()[module_name]
    by_identity = _by_identity(registry)
    for tag, value in sorted(build().items()):
        if tag in registry.by_tag:
            continue
        handler = _constant_handler(tag, value)
        registry.add(handler)
        by_identity.setdefault(id(value), handler)
    if module_name == "scipy.stats":
        from scipy.stats._distn_infrastructure import rv_continuous_frozen, rv_discrete_frozen

        if "scipy.stats.frozen" not in registry.by_tag:
            registry.add(_frozen_handler((rv_continuous_frozen, rv_discrete_frozen)))


def source(registry: Registry, tag: str) -> Handler | None:
    """Handler of a rule tag (numpy, math, operator, builtins, a scikit-learn class as a value,
    the scikit-learn partial), else None."""
    if tag in _SKLEARN_PARTIALS:
        return _sklearn_partial(tag)
    if tag.startswith("type:sklearn."):
        handler = registry.for_tag(tag[len("type:"):])
        cls = handler.cls if handler is not None else None
        return _constant_handler(tag, cls) if isinstance(cls, type) else None
    value = _rule_value(tag)
    return _constant_handler(tag, value) if value is not None else None


def all_tags() -> list[str]:
    """Every tag :func:`source` answers (tables are listed by their lazy loaders)."""
    from . import sklearn

    classes = [f"type:{tag}" for tag in sklearn.all_tags()]
    return [*_rule_tags(), *_SKLEARN_PARTIALS, *classes]


def register_values(registry: Registry) -> None:
    """``functools.partial`` and the ``operator`` getters."""
    for handler in (_PARTIAL, *_operator_handlers()):
        if handler.tag not in registry.by_tag:
            registry.add(handler)


def resolve(registry: Registry, obj: Any) -> Handler | None:
    """Handler of an allow-listed function, type or partial, by identity; else None."""
    if type(obj) is functools.partial:
        func = obj.func
        for partial_tag, (module_name, name) in _SKLEARN_PARTIALS.items():
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, name, None) is func:
                return registry.for_tag(partial_tag)
        if "functools.partial" not in registry.by_tag:
            registry._load_lazy("functools")
        return registry.by_tag["functools.partial"]
    tag = _rule_tag(obj)
    if tag is not None:
        return registry.for_tag(tag)
    handler = _from_tables(registry, obj)
    if handler is None and type(obj) is np.ufunc:
        # ufuncs have no __module__; besides numpy's, the tables hold scipy.special's.
        registry._load_lazy("scipy.special")
        handler = _from_tables(registry, obj)
    return handler


def _from_tables(registry: Registry, obj: Any) -> Handler | None:
    handler = _by_identity(registry).get(id(obj))
    if handler is not None and constant_value(handler) is obj:
        return handler
    return None
