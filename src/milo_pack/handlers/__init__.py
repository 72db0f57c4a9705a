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
``boosters``       XGBoost and LightGBM boosters and sklearn wrappers (if installed)
=================  ==========================================================================
"""

from __future__ import annotations

from ..registry import Registry


def _deferred(module: str, function: str = "register"):
    """A loader importing one of our handler modules (and its library) only when first needed."""

    def load(registry: Registry) -> None:
        from importlib import import_module

        getattr(import_module(f"{__name__}.{module}"), function)(registry)

    return load


def register_all(registry: Registry) -> None:
    """Fill ``registry``: cheap families now, library-backed ones lazily by module.

    Loading a linear model should cost importing ``sklearn.linear_model``, as unpickling does,
    not every scikit-learn module, scipy.stats or xgboost.
    """
    from . import builtins, bulk, callables, losses, numpy_, sklearn, trees

    for module in (builtins, bulk, numpy_, callables, trees, losses, sklearn):
        module.register(registry)
    registry.add_lazy("scipy.sparse", _deferred("scipy_sparse"))
    # Optional extra "boost": each library's handlers load when one of its types is needed.
    registry.add_lazy("xgboost", _deferred("boosters", "register_xgboost"))
    registry.add_lazy("lightgbm", _deferred("boosters", "register_lightgbm"))
