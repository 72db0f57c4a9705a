"""Handlers: one module per type family, save and load code side by side.

=================  ==========================================================================
module             types
=================  ==========================================================================
``builtins``       tuple, set, frozenset, dict with non-str keys, shared list/dict, bytes,
                   complex, slice, range, big int, non-finite float
``stdlib``         collections (OrderedDict, defaultdict, Counter, deque), datetime, date,
                   time, timedelta, timezone, zoneinfo.ZoneInfo, members of allow-listed enums
``bulk``           long lists, sets and dicts of plain scalars as msgpack payloads
``numpy_``         ndarray (plain, object, structured, views), matrix, masked arrays, scalars,
                   dtypes, RandomState, Generator, bit generators and SeedSequence
``scipy_sparse``   every scipy.sparse matrix and array format
``callables``      the allow-list of pure functions and type objects (numpy ufuncs, math,
                   operator, scikit-learn metrics...), partials of them, ``operator`` getters
``sklearn``        every scikit-learn estimator (generically) and allow-listed internal objects;
                   the tables it resolves tags from are in ``sklearn_tables``
``trees``          ``sklearn.tree._tree.Tree``, KD/Ball trees and distance metrics
``losses``         scikit-learn's Cython loss objects
``boosters``       what the XGBoost and LightGBM handlers share; registers them when needed
``xgboost_``       XGBoost boosters and scikit-learn wrappers (if installed)
``lightgbm_``      LightGBM boosters and scikit-learn wrappers (if installed)
=================  ==========================================================================

Filling a registry imports only ``builtins`` and ``numpy_`` (almost every file needs them); every
other family's module (and its library) is imported the first time one of its tags or objects is
met, through the small entries below, so that loading a linear model costs importing
``sklearn.linear_model``, as unpickling does, and saving a numpy array imports no scikit-learn.
Which family answers is fixed by these entries alone, never by what was imported before.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any

import numpy as np

from ..registry import Handler, Registry

# Modules whose allow-listed functions (or distributions) ``callables`` tables; each table is
# built the first time a tag or an object of its module is met.
FUNCTION_TABLES = (
    "sklearn.metrics", "sklearn.metrics.pairwise", "sklearn.metrics.cluster",
    "sklearn.feature_selection", "sklearn.preprocessing", "scipy.spatial.distance",
    "sklearn.cluster._kmeans", "scipy.special", "scipy.stats",
)
# Tag prefixes answered by ``callables``.
_CALLABLE_PREFIXES = ("function:", "type:", "distribution:", "partial:")
_BULK_TYPES = (list, tuple, dict, set, frozenset)


def _module(name: str) -> Any:
    return import_module(f"{__name__}.{name}")


def _deferred(module: str, function: str = "register",
              *args: Any) -> Callable[[Registry], None]:
    """A loader importing one of our handler modules (and its library) only when first needed."""

    def load(registry: Registry) -> None:
        getattr(_module(module), function)(registry, *args)

    return load


def _resolve_packed(obj: Any, ctx: Any) -> Any:
    """Claim a container of many trees for a packed node (see ``trees.py``).

    Cheap tests first, so that saving any list does not import scikit-learn's tree modules.
    """
    if type(obj) is np.ndarray:
        first = obj.flat[0] if obj.size else None
    else:  # a list: a forest's trees, or HistGradientBoosting's lists of predictors
        first = obj[0] if obj else None
        if type(first) is list and first and type(first[0]).__name__ == "TreePredictor":
            from . import trees

            return trees.resolve_packed_predictors(obj, ctx)
    if type(first).__module__.startswith("sklearn.tree."):
        from . import trees

        return trees.resolve_packed(obj, ctx)
    return None


def _register_sklearn(registry: Registry) -> None:
    """scikit-learn estimators and internal classes, resolved per tag from static tables."""

    def source(tag: str) -> Handler | None:
        if not tag.startswith("sklearn."):
            return None
        handler: Handler | None = _module("sklearn").handler_for_tag(tag)
        return handler

    registry.add_source(source, lambda: _module("sklearn").all_tags())

    def resolve(obj: Any) -> Handler | None:
        cls = type(obj)
        if not cls.__module__.startswith("sklearn."):
            return None
        tag = _module("sklearn").tag_for_class(cls)
        handler = registry.for_tag(tag) if tag is not None else None
        return handler if handler is not None and cls in handler.types else None

    registry.resolvers.append(resolve)

    def resolve_user_estimator(obj: Any) -> Handler | None:
        # Without sklearn.base imported, nothing is an estimator: no need to import it.
        if "sklearn.base" not in sys.modules:
            return None
        handler: Handler | None = _module("sklearn").resolve_user_estimator(obj, registry)
        return handler

    registry.fallback_resolvers.append(resolve_user_estimator)

    def trusted_factory(target: Any, tag: str) -> Handler | None:
        if "sklearn.base" not in sys.modules:
            return None
        handler: Handler | None = _module("sklearn").trusted_estimator_handler(target, tag)
        return handler

    registry.trusted_factories.append(trusted_factory)
    registry.add_lazy("scipy.interpolate", _deferred("sklearn", "register_bspline"))


def _register_callables(registry: Registry) -> None:
    """Functions, types and partials as values: ``callables`` is imported on first need."""

    def source(tag: str) -> Handler | None:
        if not tag.startswith(_CALLABLE_PREFIXES):
            return None
        handler: Handler | None = _module("callables").source(registry, tag)
        return handler

    registry.add_source(source, lambda: _module("callables").all_tags())
    for module_name in FUNCTION_TABLES:
        registry.add_lazy(module_name, _deferred("callables", "add_table", module_name))
    for module_name in ("functools", "operator"):
        registry.add_lazy(module_name, _deferred("callables", "register_values"))

    def resolve(obj: Any) -> Handler | None:
        if not callable(obj):
            return None
        handler: Handler | None = _module("callables").resolve(registry, obj)
        return handler

    registry.resolvers.append(resolve)

    def resolve_user_function(obj: Any) -> Handler | None:
        if not callable(obj):
            return None
        handler: Handler | None = _module("callables")._resolve_user_function(obj)
        return handler

    registry.fallback_resolvers.append(resolve_user_function)

    def trusted_factory(target: Any, tag: str) -> Handler | None:
        if not tag.startswith("function:"):
            return None
        handler: Handler | None = _module("callables").trusted_function_factory(target, tag)
        return handler

    registry.trusted_factories.append(trusted_factory)


def _register_stdlib(registry: Registry) -> None:
    """collections, datetime, zoneinfo values and enum members (``stdlib``, on first need)."""
    for module_name in ("collections", "datetime", "zoneinfo"):
        registry.add_lazy(module_name, _deferred("stdlib"))

    def source(tag: str) -> Handler | None:
        if not tag.startswith("enum:"):
            return None
        handler: Handler | None = _module("stdlib").enum_source(tag)
        return handler

    registry.add_source(source, lambda: _module("stdlib").enum_tags())

    def resolve(obj: Any) -> Handler | None:
        if not isinstance(obj, enum.Enum):
            return None
        handler: Handler | None = _module("stdlib").resolve_enum(obj, registry)
        return handler

    registry.resolvers.append(resolve)

    def trusted_factory(target: Any, tag: str) -> Handler | None:
        if not tag.startswith("enum:"):
            return None
        handler: Handler | None = _module("stdlib").trusted_enum(target, tag)
        return handler

    registry.trusted_factories.append(trusted_factory)


def _register_bulk(registry: Registry) -> None:
    """Long containers of plain scalars as msgpack payloads (``bulk``, on first need)."""
    registry.add_lazy("msgpack", _deferred("bulk"))

    def resolve(obj: Any) -> Handler | None:
        if type(obj) not in _BULK_TYPES or len(obj) <= 1000:
            return None
        bulk = _module("bulk")
        registry._load_lazy("msgpack")
        handler: Handler | None = bulk.resolve_bulk(obj)
        return handler

    registry.bulk_resolvers.append(resolve)


def register_all(registry: Registry) -> None:
    """Fill ``registry``: the cheap families now, every other one on first need."""
    from . import builtins, losses, numpy_

    builtins.register(registry)
    numpy_.register(registry)
    _register_bulk(registry)
    _register_callables(registry)
    _register_stdlib(registry)
    losses.register(registry)
    _register_sklearn(registry)
    registry.add_lazy("scipy.sparse", _deferred("scipy_sparse"))
    registry.add_lazy("sklearn.tree._tree", _deferred("trees", "register_tree"))
    registry.add_lazy("sklearn.tree", _deferred("trees", "register_packed"))
    registry.add_lazy("sklearn.hist_gradient_boosting",
                      _deferred("trees", "register_packed_predictors"))
    for module in ("sklearn.neighbors", "sklearn.neighbors._kd_tree",
                   "sklearn.neighbors._ball_tree"):
        registry.add_lazy(module, _deferred("trees", "register_binary_trees"))
    registry.add_lazy("sklearn.metrics._dist_metrics", _deferred("trees", "register_metrics"))
    registry.pack_resolvers.append(_resolve_packed)
    # Optional extra "boost": each library's handlers load when one of its types is needed.
    registry.add_lazy("xgboost", _deferred("boosters", "register_xgboost"))
    registry.add_lazy("lightgbm", _deferred("boosters", "register_lightgbm"))
    # Last of all: objects nothing claimed that pickle would rebuild by running their own code.
    registry.fallback_resolvers.append(builtins.explain_refusal)
