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


def register_all(registry: Registry) -> None:
    """Fill ``registry`` with every built-in handler."""
    from . import builtins, bulk, callables, losses, numpy_, scipy_sparse, sklearn, trees

    for module in (builtins, bulk, numpy_, scipy_sparse, callables, trees, losses, sklearn):
        module.register(registry)
    # Optional extra "boost": registers only the libraries that import.
    from . import boosters

    boosters.register(registry)
