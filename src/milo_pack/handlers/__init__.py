"""Handlers: one module per type family, save and load code side by side.

=================  ==========================================================================
module             types
=================  ==========================================================================
``builtins``       tuple, set, frozenset, dict with non-str keys, shared list/dict, bytes,
                   complex, slice, big int, non-finite float, allow-listed type objects
``bulk``           long lists, sets and dicts of plain scalars as msgpack payloads
``numpy_``         ndarray (plain, object, structured), masked arrays, scalars, dtypes,
                   RandomState and Generator
``scipy_sparse``   every scipy.sparse matrix and array format
``callables``      the registry of pure functions (numpy ufuncs, scikit-learn metrics...)
``sklearn``        every scikit-learn estimator (generically) and allow-listed internal objects
``trees``          ``sklearn.tree._tree.Tree``, KD/Ball trees and distance metrics
``losses``         scikit-learn's Cython loss objects
``boosters``       what the XGBoost and LightGBM handlers share; registers them when needed
``xgboost_``       XGBoost boosters and scikit-learn wrappers (if installed)
``lightgbm_``      LightGBM boosters and scikit-learn wrappers (if installed)
=================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import Registry


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


def register_all(registry: Registry) -> None:
    """Fill ``registry``: cheap families now, library-backed ones lazily by module.

    Loading a linear model should cost importing ``sklearn.linear_model``, as unpickling does,
    not every scikit-learn module, scipy.stats or xgboost.
    """
    from . import builtins, bulk, callables, losses, numpy_, sklearn

    for module in (builtins, bulk, numpy_, callables, losses, sklearn):
        module.register(registry)
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
