"""Constructor parameters, validated at load with scikit-learn's own machinery.

A parameter that reaches native code (a kernel name, ``n_features`` of a hasher, a thread count)
is checked against the class's ``_parameter_constraints``, exactly as ``fit`` would check it
(``sklearn.utils._param_validation``: the same constraint objects, the same error text).  The
constraints are read from the *class*, never the instance: a file cannot bring its own.

Thread counts (``n_jobs``) pass scikit-learn's constraints at any size, so they are also bounded
(:data:`~.kinds.MAX_THREADS`), for classes with or without constraints.

Cost: a forest has hundreds of member trees with the same parameters but one ``random_state``
each, so constraints are compiled once per (class, parameter) and a value that passed is
remembered: a scalar per (class, parameter, type, value), any other object per identity (the
members of a pack share their decoded parameter objects; the cache holds them, so an identity
is never reused).  scikit-learn's constraints on containers and objects look at their type,
never their contents, so the cache changes no answer.
"""

from __future__ import annotations

import threading
from typing import Any

from ...errors import InvariantError, quote
from .kinds import MAX_THREADS

__all__ = ["check_params", "THREAD_PARAMS"]

# Parameters that size thread pools in native code or joblib.
THREAD_PARAMS = frozenset({"n_jobs"})
_SCALARS = (type(None), bool, int, float, str)
_CACHE_MAX = 1 << 16

_compiled: dict[type, dict[str, list[Any] | None]] = {}
# class -> parameter -> value -> types that passed (scalars), or id -> object (others).  Nested
# dicts, so that a lookup allocates nothing: a load checks hundreds of members.
_passed: dict[type, dict[str, dict[Any, Any]]] = {}
_size = [0]
_whole: dict[Any, None] = {}
_MISSING = object()
_lock = threading.Lock()


def _constraints(cls: type, name: str) -> list[Any] | None:
    """The compiled constraints of one parameter, or None when it has none to check."""
    table = _compiled.get(cls)
    if table is not None and name in table:
        return table[name]
    raw = _raw_constraints(cls).get(name)
    if raw is None or raw == "no_validation":
        compiled = None
    else:
        from sklearn.utils._param_validation import make_constraint

        compiled = [make_constraint(c) for c in raw]
    with _lock:
        _compiled.setdefault(cls, {})[name] = compiled
    return compiled


def satisfies(cls: type, name: str, value: Any) -> bool | None:
    """Whether ``value`` meets parameter ``name``'s declared constraints (None when it has
    none); a value a constraint cannot even look at does not."""
    constraints = _constraints(cls, name)
    if constraints is None:
        return None
    try:
        return any(c.is_satisfied_by(value) for c in constraints)
    except Exception:  # noqa: BLE001 - fail closed
        return False


def _raw_constraints(cls: type) -> dict[str, Any]:
    """The class's ``_parameter_constraints`` (inherited through the MRO, never the
    instance's)."""
    for klass in cls.__mro__:
        table = klass.__dict__.get("_parameter_constraints")
        if isinstance(table, dict):
            return table
    return {}


def check_params(cls: type, state: dict[str, Any], names: frozenset[str], path: str) -> None:
    """Refuse parameter values scikit-learn's ``fit`` would refuse, and unbounded thread counts.

    Parameters
    ----------
    cls : type
        The estimator class (its ``_parameter_constraints`` are used, never the instance's).
    state : dict[str, Any]
        The instance's ``__dict__``.
    names : frozenset of str
        The class's parameter names; those present in ``state`` are checked.
    path : str
        Graph path of the estimator, for the error.
    """
    # The members of an ensemble mostly share every parameter value (a pack decodes them once):
    # one lookup for the whole set when the values are hashable (types included, so that 1,
    # 1.0 and True never share an entry).
    values = tuple(state.get(name, _MISSING) for name in names)
    try:
        whole: Any = (cls, values, tuple(map(type, values)))
        if whole in _whole:
            return
    except Exception:  # noqa: BLE001 - unhashable (an array, a dict): check one by one
        whole = None
    seen = _passed.get(cls)
    if seen is None:
        with _lock:
            seen = _passed.setdefault(cls, {})
    for name in names:
        if name not in state:
            continue
        value = state[name]
        if name in THREAD_PARAMS and value is not None and not (
                type(value) is int and -MAX_THREADS <= value <= MAX_THREADS):
            raise InvariantError(
                f"parameter {name} must be None or an int within +-{MAX_THREADS} (it sizes a "
                f"thread pool), not {quote(value, 40)}", path)
        known = seen.get(name)
        scalar = type(value) in _SCALARS
        if known is not None:
            if scalar:
                if type(value) in known.get(value, ()):
                    continue
            elif known.get(id(value)) is value:
                continue
        satisfied = satisfies(cls, name, value)
        if satisfied is None:
            continue
        if not satisfied:
            _raise(cls, name, value, path)
        with _lock:
            if _size[0] >= _CACHE_MAX:
                _passed.clear()
                _size[0] = 0
                seen = _passed.setdefault(cls, {})
            table = seen.setdefault(name, {})
            if scalar:
                table[value] = (*table.get(value, ()), type(value))
            else:
                table[id(value)] = value
            _size[0] += 1

    if whole is not None:
        with _lock:
            if len(_whole) >= _CACHE_MAX:
                _whole.clear()
            _whole[whole] = None


def _raise(cls: type, name: str, value: Any, path: str) -> None:
    """Raise scikit-learn's own message for an invalid value, as an ``InvariantError``."""
    from sklearn.utils._param_validation import validate_parameter_constraints

    try:
        validate_parameter_constraints({name: _raw_constraints(cls)[name]}, {name: value},
                                       cls.__name__)
    except Exception as exc:  # noqa: BLE001 - scikit-learn's message, or why it has none
        raise InvariantError(f"invalid parameter: {quote(str(exc), 300)}", path) from None
    raise InvariantError(f"invalid parameter {name}", path)  # pragma: no cover
