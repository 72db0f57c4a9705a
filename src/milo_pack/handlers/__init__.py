"""Handlers: one module per type family, save and load code side by side.

=================  ==========================================================================
module             types
=================  ==========================================================================
``builtins``       tuple, set, frozenset, dict with non-str keys, shared list/dict, bytes,
                   complex, slice, range, big int, non-finite float
``stdlib``         collections (OrderedDict, defaultdict, Counter, deque), datetime, date,
                   time, timedelta, timezone, zoneinfo.ZoneInfo, members of allow-listed enums
``bulk``           long lists, sets and dicts of plain scalars as msgpack payloads
``numpy_``         ndarray (plain, object, structured, views), masked arrays, scalars, dtypes,
                   RandomState, Generator, bit generators and SeedSequence
``scipy_sparse``   every scipy.sparse matrix and array format
``callables``      the allow-list of pure functions and type objects (numpy ufuncs, math,
                   operator, scikit-learn metrics...), partials of them, ``operator`` getters
``sklearn``        every scikit-learn estimator (generically) and allow-listed internal objects;
                   the tables it resolves tags from are in ``sklearn_tables``
``trees``          ``sklearn.tree._tree.Tree``, KD/Ball trees and distance metrics
``losses``         scikit-learn's Cython loss objects
``boosters``       XGBoost and LightGBM boosters and sklearn wrappers (if installed)
=================  ==========================================================================

Filling a registry imports no library: each family's handlers (and its library) are imported the
first time one of its tags or objects is met, so that loading a linear model costs importing
``sklearn.linear_model``, as unpickling does, and saving a numpy array imports no scikit-learn.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..registry import Handler, Registry


def _deferred(module: str, function: str = "register"):
    """A loader importing one of our handler modules (and its library) only when first needed."""

    def load(registry: Registry) -> None:
        from importlib import import_module

        getattr(import_module(f"{__name__}.{module}"), function)(registry)

    return load


def _resolve_packed(obj: Any, ctx: Any) -> Any:
    """Claim a container of many small trees for a packed node (see ``trees.py``).

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
        from . import sklearn

        return sklearn.handler_for_tag(tag)

    def all_tags() -> list[str]:
        from . import sklearn

        return sklearn.all_tags()

    registry.add_source(source, all_tags)

    def resolve(obj: Any) -> Handler | None:
        cls = type(obj)
        if not cls.__module__.startswith("sklearn."):
            return None
        from . import sklearn

        tag = sklearn.tag_for_class(cls)
        handler = registry.for_tag(tag) if tag is not None else None
        return handler if handler is not None and cls in handler.types else None

    registry.resolvers.append(resolve)

    def resolve_user_estimator(obj: Any) -> Handler | None:
        # Without sklearn.base imported, nothing is an estimator: no need to import it.
        if "sklearn.base" not in sys.modules:
            return None
        from . import sklearn

        return sklearn.resolve_user_estimator(obj, registry)

    registry.fallback_resolvers.append(resolve_user_estimator)

    def trusted_factory(target: Any, tag: str) -> Handler | None:
        if "sklearn.base" not in sys.modules:
            return None
        from . import sklearn

        return sklearn.trusted_estimator_handler(target, tag)

    registry.trusted_factories.append(trusted_factory)


def register_all(registry: Registry) -> None:
    """Fill ``registry``: cheap families now, library-backed ones on first need."""
    from . import builtins, bulk, callables, losses, numpy_, stdlib

    for module in (builtins, bulk, numpy_, callables, stdlib, losses):
        module.register(registry)
    _register_sklearn(registry)
    registry.add_lazy("scipy.interpolate", _deferred("sklearn", "register_bspline"))
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
