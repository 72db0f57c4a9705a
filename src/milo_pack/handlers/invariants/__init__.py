"""Model invariants checked at load, for state that native code later trusts.

The invariants are *declared* (:mod:`.specs`: one :class:`~.kinds.Spec` per class family, the
attributes it must hold, their kinds and how their shapes relate) and checked by one mechanism
(:mod:`.kinds`).  Two hooks run them, both called by the handlers:

- :func:`check_state` runs on the decoded state of an allow-listed internal object *before* it is
  set (HistGradientBoosting's ``TreePredictor``), see :mod:`.state`;
- :func:`check_fitted` runs on a built estimator before it is returned (by the generic estimator
  handler, by packed-member builders, and again for an ensemble each time one of its lazy members
  is built): its parameters against scikit-learn's own constraints (:mod:`.params`), its
  attribute names against the class, and every spec that covers its class.

Fail closed: a spec that covers a fitted estimator checks every attribute it names; one missing,
of an unexpected type or shape, is an :class:`~milo_pack.errors.InvariantError` with the graph
path.  An *unfitted* estimator (none of its attributes ends in ``_`` and none of the spec's
fitted attributes is set) is left alone: scikit-learn refuses to predict with it, and it holds
no state for native code to read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ...errors import InvariantError, quote
from ...lazy import is_unbuilt_member, member_of
from .kinds import MAX_THREADS, Env, Reject, Spec
from .params import check_params
from .specs import SPECS, STATELESS, STRUCTURES
from .state import STATE_CHECKS, check_state

__all__ = ["check_state", "check_fitted", "check_fitted_alike", "check_member", "specs_for",
           "STATE_CHECKS", "SPECS", "STRUCTURES", "MAX_THREADS"]

_BY_TYPE: dict[type, tuple[Spec, ...]] = {}
_PARAMS: dict[type, frozenset[str]] = {}
_CLASS_NAMES: dict[type, frozenset[str]] = {}
_LAYOUT: dict[tuple[type, tuple[str, ...]], tuple[str | None, bool]] = {}
_LAYOUT_MAX = 1 << 14
# For each spec with member rules: the checked values and dims of an ensemble, against which a
# lazily built member is then checked alone (see check_member).
_Checked = list[tuple[Spec, dict[str, Any], dict[str, int]]]
_lock = threading.Lock()


def specs_for(cls: type) -> tuple[Spec, ...]:
    """The specs covering ``cls`` (cached: a class's bases are loaded once it exists)."""
    found = _BY_TYPE.get(cls)
    if found is None:
        found = tuple(spec for spec in SPECS if spec.covers(cls))
        with _lock:
            _BY_TYPE[cls] = found
    return found


def _param_names(cls: type) -> frozenset[str]:
    found = _PARAMS.get(cls)
    if found is None:
        get = getattr(cls, "_get_param_names", None)
        try:
            # The estimator handler's reading of the same names (``__init__``'s code when it
            # is a plain function, else ``_get_param_names``): no inspect.signature on a
            # first load.
            from ..sklearn import param_names

            found = param_names(cls) if callable(get) else frozenset()
        except (TypeError, ValueError, RuntimeError):  # pragma: no cover - odd signatures
            found = frozenset()
        with _lock:
            _PARAMS[cls] = found
    return found


def _class_names(cls: type) -> frozenset[str]:
    """Names the class (or a base) defines: an instance attribute must not shadow one."""
    found = _CLASS_NAMES.get(cls)
    if found is None:
        names: set[str] = set()
        for klass in cls.__mro__:
            if klass is not object:
                names.update(klass.__dict__)
        found = frozenset(names)
        with _lock:
            _CLASS_NAMES[cls] = found
    return found


def _layout(cls: type, d: dict[str, Any], params: frozenset[str],
            specs: tuple[Spec, ...]) -> tuple[str | None, bool]:
    """The first attribute that would shadow the class (or None), and whether the estimator is
    fitted: both depend on the attribute names only, which an ensemble's members share."""
    key = (cls, tuple(d))
    found = _LAYOUT.get(key)
    if found is None:
        names = _class_names(cls)
        shadowing = next((n for n in d if n in names and n not in params), None)
        found = (shadowing, _is_fitted(d, params, specs))
        with _lock:
            if len(_LAYOUT) >= _LAYOUT_MAX:
                _LAYOUT.clear()
            _LAYOUT[key] = found
    return found


def _is_fitted(d: dict[str, Any], params: frozenset[str], specs: tuple[Spec, ...]) -> bool:
    """scikit-learn's rule (an attribute ending in ``_``), or any fitted attribute a spec
    declares (private ones such as ``_n_support`` do not end in ``_``)."""
    for key in d:
        if key.endswith("_") and not key.startswith("__"):
            return True
    return any(name in d and name not in params for spec in specs for name in spec.names())


def check_fitted(obj: Any, path: str) -> None:
    """Check a built estimator: parameters, attribute names and its declared invariants.

    Parameters
    ----------
    obj : object
        The estimator, state set.
    path : str
        Its graph path, for errors.

    Raises
    ------
    milo_pack.errors.InvariantError
        A parameter scikit-learn would refuse, an attribute shadowing the class, or a declared
        invariant that does not hold (missing attribute, other type, other shape...).
    """
    _check_fitted(obj, path)


def _check_fitted(obj: Any, path: str) -> _Checked:
    """The checks of :func:`check_fitted`; returns what :func:`check_member` reuses."""
    d = getattr(obj, "__dict__", None)
    if not isinstance(d, dict) or is_unbuilt_member(obj):
        return []
    cls = type(obj)
    params = _param_names(cls)
    if params:
        check_params(cls, d, params, path or "<root>")
    specs = specs_for(cls)
    shadowing, fitted = _layout(cls, d, params, specs)
    if shadowing is not None:
        raise InvariantError(f"attribute {quote(shadowing)} would shadow the class's own "
                             f"{cls.__name__}.{quote(shadowing)}", path or "<root>")
    checked: list[tuple[Spec, dict[str, Any], dict[str, int]]] = []
    for spec in specs:
        if fitted or spec.title in STATELESS:
            env = Env(obj, d, path)
            spec.check(env)
            if any(rule.members for rule in spec.rules):
                checked.append((spec, env.values, env.dims))
    return checked


def check_fitted_alike(objs: list[Any], path_of: Callable[[int], str]) -> bool:
    """:func:`check_fitted` for many estimators built alike (the members of a pack), in one pass.

    The first is checked whole (its error, if any, is raised).  Each other one is then proven
    to pass exactly as the first does: the same class (not a lazy member), the same attribute
    names in the same order (so the same shadowing and fitted answers), every attribute the
    same object as the first's (so the same parameter checks, kinds and rules), except
    attributes a spec declares ``alike`` (a member's own tree), whose declared properties must
    equal the first's.  Everything :func:`check_fitted` reads is then what it read for the
    first, so it passes for every member.

    Parameters
    ----------
    objs : list
        The estimators, state set.
    path_of : callable
        The graph path of the estimator at an index, for the first one's errors.

    Returns
    -------
    bool
        True when every estimator passes; False when the proof does not hold for one (then
        call :func:`check_fitted` on each: it names the estimator and the failing check).

    Raises
    ------
    milo_pack.errors.InvariantError
        The first estimator fails :func:`check_fitted`.
    """
    if not objs:
        return True
    first = objs[0]
    cls = type(first)
    d0 = getattr(first, "__dict__", None)
    if not isinstance(d0, dict) or member_of(first) is not None:
        return False
    _check_fitted(first, path_of(0))
    # An attribute is compared through the specs' declared properties only where every spec
    # covering the class declares it so (another spec may read more of it) and it is not a
    # parameter (checked against scikit-learn's constraints by identity).
    specs = specs_for(cls)
    keyed: dict[str, list[Callable[[Any], Any]]] = {}
    for spec in specs:
        for name, key in spec.alike:
            keyed.setdefault(name, []).append(key)
    params = _param_names(cls)
    keyed = {name: keys for name, keys in keyed.items()
             if len(keys) == len(specs) and name not in params}
    names = tuple(d0)
    try:
        dicts = [o.__dict__ for o in objs if type(o) is cls]
        if len(dicts) != len(objs) or any(tuple(d) != names for d in dicts):
            return False
        for name, value in d0.items():
            column = list(map(itemgetter(name), dicts))
            if name in keyed:
                for key in keyed[name]:
                    want = key(value)
                    if not all(key(v) == want for v in column):
                        return False
            elif len(set(map(id, column))) != 1:
                return False
    except Exception:  # noqa: BLE001 - not proven: each is checked instead
        return False
    return True


def _snapshot(d: dict[str, Any]) -> tuple[int, ...]:
    return tuple(map(id, d.values()))


def check_member(owner: Any, path: str, member: Any,
                 memo: dict[int, tuple[Any, tuple[int, ...], _Checked]] | None = None) -> None:
    """Check one ensemble member, just built lazily, against its ensemble.

    The first member built checks the ensemble whole (this member included) and keeps what it
    found in ``memo``; later members, while the ensemble's attributes are still the same
    objects, run only its member rules, for themselves: streaming through N members costs
    O(N), not O(N^2).  ``memo`` belongs to the lazy load (its entries hold the ensemble, whose
    members hold the load: a cycle the garbage collector frees with the model, where a global
    weak-keyed table would keep it alive); without one, the ensemble is checked whole.

    Parameters
    ----------
    owner : object
        The ensemble.
    path : str
        Its graph path.
    member : object
        The member (a lazy proxy whose state was just built).
    memo : dict, optional
        The lazy load's record of checked ensembles.
    """
    d = getattr(owner, "__dict__", None)
    found = memo.get(id(owner)) if memo is not None and isinstance(d, dict) else None
    # The entry holds the ensemble and the checked values: none of their ids can be reused.
    if found is None or found[0] is not owner or found[1] != _snapshot(d):  # type: ignore[arg-type]
        checked = _check_fitted(owner, path)
        if memo is not None and isinstance(d, dict):
            memo[id(owner)] = (owner, _snapshot(d), checked)
        return
    for spec, values, dims in found[2]:
        focused = Env(owner, d, path)  # type: ignore[arg-type]
        focused.values, focused.dims, focused.focus = values, dims, member
        try:
            for rule in spec.rules:
                if rule.members:
                    rule.check(focused)
        except Reject as exc:
            focused.fail(str(exc))
        except InvariantError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: a check that cannot run
            focused.fail(f"cannot be checked ({type(exc).__name__}) against {spec.title}")
